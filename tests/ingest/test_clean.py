"""Normalisation, quality filters and deduplication: each decision a user would see."""

from __future__ import annotations

import random

import pytest

from core.models import Document
from ingest.clean import DocumentCleaner
from ingest.config import IngestConfig
from ingest.dedup import ExactDuplicateIndex, NearDuplicateIndex
from ingest.documents import document_id, documents_from_texts
from ingest.normalise import normalise_text, text_sha256
from ingest.quality import QualityFilter

GOOD = (
    "Knowledge graphs store facts as triples. Each triple links a subject entity to an "
    "object entity through a predicate. Graph databases answer questions by following "
    "these links, which makes multi-hop reasoning explicit and auditable."
)


def _long_text(seed: int, words: int = 120) -> str:
    """Prose-like text of distinct words, so near-duplicate tests control the overlap."""
    rng = random.Random(seed)
    vocab = [
        f"{rng.choice('bcdfglmnprst')}{rng.choice('aeiou')}{rng.choice('nrst')}{i}"
        for i in range(words)
    ]
    sentences = [" ".join(vocab[i : i + 12]).capitalize() + "." for i in range(0, words, 12)]
    return " ".join(sentences)


def clean(texts: list[str], config: IngestConfig | None = None) -> tuple[list[str], dict]:
    docs = documents_from_texts(texts, ids=[f"d{i}" for i in range(len(texts))])
    result = DocumentCleaner(config).run(docs)
    kept = [d.source for d in result.kept]
    dropped = {d.source: (d.reason, d.detail) for d in result.dropped}
    return kept, dropped


# --- normalisation --------------------------------------------------------------------


def test_normalise_nfkc_controls_and_whitespace() -> None:
    raw = (
        "\ufeff\uff26\uff55\uff4c\uff4c\u00a0width ﬁ\u200bne\x07 text\t\ttabs  "
        "\r\n\r\n\r\n\r\nnext\u2028line  "
    )
    assert normalise_text(raw) == "Full width fine text tabs\n\nnext\nline"


def test_normalise_removes_lone_surrogates_so_text_can_be_hashed() -> None:
    text = normalise_text("ok \ud800 fine")
    assert text == "ok fine"
    assert len(text_sha256(text)) == 64


def test_normalise_is_idempotent_on_varied_text() -> None:
    rng = random.Random(3)
    alphabet = "ab é\u0301\u200b\u00ad\n\r\t \u3000ﬁ①\x00\x85\u2029Å\u212b.,!\ufb01日"
    for _ in range(500):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        once = normalise_text(s)
        assert normalise_text(once) == once, repr(s)


def test_cleaner_renormalises_api_documents_and_fixes_their_hash() -> None:
    doc = Document(id="x", source="s", sha256="wrong", text="  Caf\u0065\u0301  " + GOOD)

    [kept] = DocumentCleaner().run([doc]).kept

    assert kept.text == "Café " + GOOD
    assert kept.sha256 == text_sha256(kept.text)


# --- quality --------------------------------------------------------------------------


def test_good_document_is_kept() -> None:
    kept, dropped = clean([GOOD])
    assert kept == ["api#d0"] and dropped == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("!!! ???", "empty"),
        ("Too short to matter.", "too_few_words"),
        (
            "$$$ BUY $$$ NOW ### cheap !!! deals @@@ best %%% prices *** click ^^^ here "
            "$$$ win ### big !!! today @@@ only %%% now",
            "symbol_ratio",
        ),
        ("1,200 3,400 5,600 7,800 9.1 2.2 3.3 4.4 5.5 6.6 7.7 apples and pears", "non_alphabetic"),
        (
            "\n".join(["Click here to subscribe to our newsletter today."] * 4 + [GOOD]),
            "repeated_lines",
        ),
        (
            "Home\nAbout Us\nProducts And Services\nContact Our Team\nCareers At Company\n"
            "Privacy Policy Terms",
            "few_punctuated_lines",
        ),
    ],
)
def test_low_quality_document_is_dropped_with_its_reason(text: str, reason: str) -> None:
    kept, dropped = clean([text])
    assert kept == []
    assert dropped["api#d0"][0] == reason
    assert dropped["api#d0"][1]  # the measured value is reported


def test_markdown_structure_is_not_mistaken_for_symbol_spam() -> None:
    md = (
        "# Graphs\n\n## Triples\n\n- Subjects are entities.\n- Objects are entities.\n"
        "- Predicates link them.\n\n| name | kind |\n| --- | --- |\n| Paris | city |\n\n"
        "> Graphs make reasoning explicit - and auditable.\n\n" + GOOD
    )
    assert QualityFilter().run(md) is None


def test_hard_wrapped_prose_is_not_mistaken_for_a_menu() -> None:
    wrapped = (
        "Serves state-filtered queries sorted by start time (the\n"
        "existing indexes do not include the state, so the planner walked\n"
        "them and filtered afterwards). Postgres creates the index concurrently, and\n"
        "rejects offline generation. Downgrading removes the index.\n\n"
        "# Next section\n"
        "The index is rebuilt when it is invalid, keeping\n"
        "the old one until the new one is valid."
    )
    assert QualityFilter().run(wrapped) is None


def test_thresholds_come_from_config() -> None:
    assert clean(["Too short to matter."], IngestConfig(min_words=0))[0] == ["api#d0"]


# --- duplicates -----------------------------------------------------------------------


def test_exact_duplicate_is_dropped_and_names_the_kept_one() -> None:
    kept, dropped = clean([GOOD, "  " + GOOD.replace(" ", "  ")])

    assert kept == ["api#d0"]
    reason, detail = dropped["api#d1"]
    assert reason == "exact_duplicate"
    assert detail == f"exact duplicate of {document_id('d0')} (api#d0)"


def test_near_duplicate_with_one_word_changed_is_dropped() -> None:
    original = _long_text(1)
    words = original.split()
    words[60] = "changed"
    near = " ".join(words)
    unrelated = _long_text(2)

    kept, dropped = clean([original, near, unrelated])

    assert kept == ["api#d0", "api#d2"]
    reason, detail = dropped["api#d1"]
    assert reason == "near_duplicate"
    assert detail.startswith(f"near_duplicate of {document_id('d0')} (api#d0) (jaccard~0.")
    similarity = float(detail.rsplit("~", 1)[1].rstrip(")"))
    assert 0.8 <= similarity < 1.0


def test_near_duplicates_are_found_reliably_not_by_luck() -> None:
    # One word changed in 120: true Jaccard of the 5-shingles ~0.92. LSH with default
    # band sizes misses some of these; every one must be found.
    index = NearDuplicateIndex(IngestConfig())
    for seed in range(40):
        words = _long_text(100 + seed).split()
        index.add(f"orig{seed}", index.signature(" ".join(words)))
        words[seed + 40] = "changed"
        found = index.nearest(index.signature(" ".join(words)))
        assert found is not None and found[0] == f"orig{seed}", seed


def test_half_rewritten_document_is_not_a_near_duplicate() -> None:
    original = _long_text(1)
    words = original.split()
    rewritten = " ".join(words[:60] + _long_text(9).split()[60:])

    kept, _ = clean([original, rewritten])

    assert kept == ["api#d0", "api#d1"]


def test_same_id_twice_in_a_batch_keeps_the_first() -> None:
    a, b = documents_from_texts([GOOD, GOOD + " Extra sentence."], ids=["same", "same"])

    result = DocumentCleaner().run([a, b])

    assert [d.text for d in result.kept] == [GOOD]
    assert result.dropped[0].reason == "duplicate_id"


def test_indexes_can_carry_known_documents_into_the_next_batch() -> None:
    config = IngestConfig()
    exact, near = ExactDuplicateIndex(), NearDuplicateIndex(config)
    first = DocumentCleaner(config, exact=exact, near=near).run(
        documents_from_texts([_long_text(1)], ids=["old"])
    )
    again = documents_from_texts([_long_text(1), _long_text(1)], ids=["old", "new"])

    second = DocumentCleaner(config, exact=exact, near=near).run(again)

    assert len(first.kept) == 1
    # the stored document itself (same id) is not its own duplicate; a copy is
    assert [d.id for d in second.kept] == [document_id("old")]
    assert [d.reason for d in second.dropped] == ["exact_duplicate"]
