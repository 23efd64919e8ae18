"""Chunks: exact offsets on varied text, token budget, overlap, stable content ids."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from itertools import pairwise

import pytest

from core.models import Chunk, Document
from ingest.chunking import (
    ChunkSpanLocator,
    SentenceChunker,
    regex_tokens,
    split_sentences,
)
from ingest.config import IngestConfig
from ingest.documents import documents_from_texts

SMALL = IngestConfig(chunk_size_tokens=30, chunk_overlap_tokens=8)

_PIECES = [
    "Knowledge graphs store facts.",
    "Mr. Smith met Dr. Jones in St. Louis on Jan. 5.",
    "Is it true?",
    "Yes!",
    "Der Straßenbahnfahrer grüßt höflich.",
    "日本語の文です。",
    "Ελληνικά κείμενα, επίσης.",
    "émoji 🧠 and ﬁ ligatures",
    "x" * 150,  # one long word: split by characters
    "a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v, w",
    "Same sentence again.",
    "Same sentence again.",
    "",
]
_GLUE = [" ", "  ", "\n", "\n\n", "\n\n\n\n", "\t", " \u00a0 ", ""]


def _random_texts(n: int, seed: int = 11) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(n):
        parts = [rng.choice(_PIECES) + rng.choice(_GLUE) for _ in range(rng.randint(1, 60))]
        yield "".join(parts)


def _doc(text: str, key: str = "doc") -> Document:
    return documents_from_texts([text], ids=[key])[0]


def _assert_exact(doc: Document, chunks: list[Chunk]) -> None:
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.doc_id == doc.id
        assert c.id == Chunk.make_id(doc.id, c.start, c.text)
    starts = [c.start for c in chunks]
    assert starts == sorted(set(starts))  # strictly increasing


@pytest.mark.parametrize(
    "config", [SMALL, IngestConfig(chunk_size_tokens=12, chunk_overlap_tokens=0), IngestConfig()]
)
def test_offsets_are_exact_on_varied_text(config: IngestConfig) -> None:
    chunker = SentenceChunker(config)
    for text in _random_texts(120):
        doc = _doc(text)
        chunks = chunker.chunk(doc)
        _assert_exact(doc, chunks)
        if doc.text:
            # every non-space character of the document is in some chunk
            covered = set()
            for c in chunks:
                covered.update(range(c.start, c.end))
            assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


def test_chunks_respect_the_token_budget_and_overlap() -> None:
    text = " ".join(f"Sentence number {i} says something about graphs." for i in range(60))
    chunks = SentenceChunker(SMALL).chunk(_doc(text))

    assert len(chunks) > 5
    for c in chunks:
        assert len(regex_tokens(c.text)) <= SMALL.chunk_size_tokens
        assert c.text.endswith(".")  # sentence aligned: sentences fit the budget
    for a, b in pairwise(chunks):
        assert b.start < a.end  # overlap carried over
        assert len(regex_tokens(a.text[b.start - a.start :])) <= SMALL.chunk_overlap_tokens


def test_repeated_sentences_get_distinct_forward_spans() -> None:
    text = "Same sentence again. " * 40
    doc = _doc(text)
    chunks = SentenceChunker(SMALL).chunk(doc)

    _assert_exact(doc, chunks)
    assert chunks[-1].end == len(doc.text)  # the last copy is reached, not an early one
    assert len({c.id for c in chunks}) == len(chunks)


def test_chunk_ids_are_stable_across_runs_and_change_with_text() -> None:
    text = " ".join(f"Fact {i} links entity {i} to entity {i + 1}." for i in range(40))
    first = SentenceChunker(SMALL).chunk(_doc(text))
    second = SentenceChunker(SMALL).chunk(_doc(text))
    edited = SentenceChunker(SMALL).chunk(_doc(text.replace("Fact 39", "Claim 39")))
    other_doc = SentenceChunker(SMALL).chunk(_doc(text, key="other"))

    assert [c.id for c in first] == [c.id for c in second]
    assert [c.id for c in edited][:-1] == [c.id for c in first][:-1]
    assert edited[-1].id != first[-1].id
    assert not {c.id for c in other_doc} & {c.id for c in first}


def test_short_and_empty_documents() -> None:
    chunker = SentenceChunker()
    [only] = chunker.chunk(_doc("Just one sentence."))
    assert (only.start, only.end, only.position) == (0, 18, 0)
    assert chunker.chunk(_doc("")) == []


def test_chunking_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("chunking tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for tokenizer in ("regex", "tiktoken"):
        config = IngestConfig(chunk_size_tokens=20, chunk_overlap_tokens=4, tokenizer=tokenizer)
        doc = _doc("Graphs are useful. " * 30)
        _assert_exact(doc, SentenceChunker(config).chunk(doc))


def test_split_sentences_is_lossless_and_keeps_abbreviations() -> None:
    text = "Dr. Who met J. R. R. Tolkien, e.g. at noon. Then he left!  Was it 3.5 km? 好。好。"
    parts = split_sentences(text)

    assert "".join(parts) == text
    assert parts == [
        "Dr. Who met J. R. R. Tolkien, e.g. at noon. ",
        "Then he left!  ",
        "Was it 3.5 km? 好。",  # spaCy's English senter keeps the CJK sentence with it
        "好。",
    ]


def test_locator_matches_chunks_whose_whitespace_differs() -> None:
    text = "Alpha beta.\n\n\nGamma   delta. Alpha beta.\n\nGamma delta."
    locator = ChunkSpanLocator(text, regex_tokens, max_overlap=0)

    first = locator.locate("Alpha beta.Gamma delta.")  # whitespace dropped by a splitter
    second = locator.locate("Alpha beta.\n\nGamma delta.")

    assert first is not None and text[first[0] : first[1]] == "Alpha beta.\n\n\nGamma   delta."
    assert second is not None and second[0] > first[0]
    assert text[second[0] : second[1]] == "Alpha beta.\n\nGamma delta."
