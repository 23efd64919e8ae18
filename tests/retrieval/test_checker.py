"""The trained grounding checker, MiniCheck's aggregation, narrowed citations, the LLM
checker's log-probability score, and the training data and loop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.answer import Sentence
from core.llm.base import Completion
from core.llm.testing import ScriptedChatModel
from core.models import Chunk
from retrieval.checker import CrossEncoderGroundingChecker, make_checker
from retrieval.checker_data import (
    TrainingData,
    balanced,
    dialogue_pairs,
    held_out,
    vitaminc_pairs,
)
from retrieval.checker_train import (
    TrainConfig,
    auroc,
    batches,
    best_threshold,
    ranked_pairs,
    train_checker,
)
from retrieval.chunk_rag import ScoredChunk
from retrieval.generate import Sources
from retrieval.verify import (
    GroundingVerifier,
    LLMGroundingChecker,
    check_claim,
    split_pieces,
)
from tests.checker import synthetic_pairs, tiny_checker_dir

# The tiny checker trains once per session (about a minute on two free cores; far more on
# a loaded machine), in the first test that needs it.
pytestmark = pytest.mark.timeout(1800)


def chunk(key: str, text: str) -> ScoredChunk:
    return ScoredChunk(Chunk(id=Chunk.make_id(f"doc_{key}", 0, text), doc_id=f"doc_{key}",
                             text=text, start=0, end=len(text), position=0), 0.9, "vector")


BIO = chunk("bio", "Marie Curie was born in Warsaw in 1867. She married Pierre Curie in 1895. "
                   "She won the Nobel Prize in Physics in 1903.")
RIVER = chunk("river", "The Danube flows through Vienna and Budapest to the Black Sea.")


@pytest.fixture(scope="module")
def trained() -> CrossEncoderGroundingChecker:
    return CrossEncoderGroundingChecker(tiny_checker_dir())


def test_trained_checker_ranks_a_supported_claim_above_a_contradicted_one(
        trained: CrossEncoderGroundingChecker) -> None:
    passage = BIO.chunk.text
    right, wrong = trained.scores("Marie Curie was born in Warsaw.", [passage])[0], \
        trained.scores("Marie Curie was born in Berlin.", [passage])[0]
    assert right is not None and wrong is not None
    assert right > wrong
    assert right >= 0.5 > wrong  # 0.5 is the threshold chosen on its held-out pairs
    info = trained.info
    assert info.validation["auroc"] > 0.6 and "held-out" in info.threshold_rule


def test_answer_sentence_cites_only_the_chunk_that_supports_it(
        trained: CrossEncoderGroundingChecker) -> None:
    sources = Sources.number([BIO, RIVER], [])
    both = [BIO.chunk.id, RIVER.chunk.id]
    out = GroundingVerifier(trained).verify([
        Sentence(text="Marie Curie was born in Warsaw.", citations=both),
        Sentence(text="Marie Curie was born in Berlin.", citations=both),
    ], sources)
    assert out[0].verification.label == "supported"
    assert out[0].citations == [BIO.chunk.id] == out[0].verification.evidence
    assert out[0].verification.checked == both
    # Nothing supports the second sentence: it cites nothing and says so.
    assert out[1].verification.label == "unsupported" and out[1].citations == []


class KeywordChecker:
    """A stand-in checker: a piece supports a claim when it holds the claim's last word."""

    name = "keyword"
    piece_words = 8
    exhaustive = True

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scores(self, claim: str, texts: Sequence[str], context: str = ""
               ) -> list[float | None]:
        self.seen += texts
        word = claim.rstrip(".").split()[-1]
        return [0.9 if word in t else 0.1 for t in texts]


def test_claim_support_is_its_weakest_sentence_each_scored_against_chunked_evidence(
        ) -> None:
    long_text = ("Filler words without the answer here. " * 6) + "The tower is in Paris."
    checker = KeywordChecker()
    c = check_claim(checker, "The tower is in Paris. It opened in 1889.",
                    ["Nothing relevant at all.", long_text])
    assert all(len(p.split()) <= 8 for p in checker.seen)  # cut to the checker's length
    first, second = c.sentences
    assert (first.score, first.best, first.supporting) == (0.9, 1, [1])
    assert (second.score, second.supporting) == (0.1, [])
    assert c.score == 0.1 and not c.supported and c.best == second.best
    assert check_claim(checker, "The tower is in Paris.", [long_text]).supported


def test_a_sentence_longer_than_a_piece_is_cut_into_word_windows() -> None:
    text = " ".join(f"w{i}" for i in range(25))  # one "sentence", no full stop
    pieces = split_pieces(text, 10)
    assert [len(p.split()) for p in pieces] == [10, 10, 5]
    assert " ".join(pieces) == text


def test_uncited_context_is_checked_when_the_cited_chunk_does_not_support() -> None:
    sources = Sources.number([BIO, RIVER], [])
    out = GroundingVerifier(KeywordChecker()).verify(
        [Sentence(text="The river reaches the Black Sea.", citations=[BIO.chunk.id])], sources)
    v = out[0].verification
    assert v.label == "supported" and out[0].citations == [RIVER.chunk.id]
    assert v.checked == [BIO.chunk.id, RIVER.chunk.id]


def test_llm_checker_scores_by_the_probability_of_its_true_verdict() -> None:
    def reply(p_true: float) -> Completion:
        top = {" true": math.log(p_true), " false": math.log(1 - p_true)}
        return Completion(text='{"supported": true}' if p_true >= 0.5 else
                          '{"supported": false}', model="scripted",
                          tokens=('{"', "supported", '":', " true" if p_true >= 0.5
                                  else " false", "}"),
                          top_logprobs=({'{"': 0.0}, {"supported": 0.0}, {'":': 0.0}, top,
                                        {"}": 0.0}))

    llm = ScriptedChatModel([reply(0.8), reply(0.3)])
    checker = LLMGroundingChecker(llm, max_pieces=1)
    assert checker.scores("Marie Curie was born in Warsaw.", [BIO.chunk.text]) == \
        [pytest.approx(0.8)]
    assert checker.scores("Marie Curie was born in Lyon.", [BIO.chunk.text]) == \
        [pytest.approx(0.3)]
    assert llm.requests[0].top_logprobs == 5


def test_without_a_trained_checker_the_default_falls_back_to_embeddings(
        tmp_path: Path, embedder: object) -> None:
    from core.settings import load_settings

    s = load_settings(data_dir=tmp_path, grounding="trained")
    checker = make_checker(s, embedder, ScriptedChatModel())  # type: ignore[arg-type]
    assert checker is not None and checker.name == "embedding"
    s2 = load_settings(data_dir=tmp_path, grounding="trained",
                       checker_path=tiny_checker_dir())
    checker2 = make_checker(s2, embedder, ScriptedChatModel())  # type: ignore[arg-type]
    assert checker2 is not None and checker2.name == "trained"


def test_training_sources_parse_and_split_without_leaks() -> None:
    dialogue = dialogue_pairs([{"knowledge": "Iron Man is starring Robert Downey Jr.",
                                "dialogue_history": "[Human]: Do you like Iron Man?",
                                "right_response": "Yes, Robert Downey Jr. is great.",
                                "hallucinated_response": "Yes, Tom Hanks is great in it."}])
    assert [(p.label, p.source) for p in dialogue] == [(1, "halueval-dialogue"),
                                                       (0, "halueval-dialogue")]
    vita = vitaminc_pairs([
        {"input": "Westlife: sold 23 million.\nClaim: Westlife sold 23 million.",
         "target_scores": {"True": 1, "False": 0, "Neither": 0}},
        {"input": "Westlife: sold 23 million.\nClaim: Westlife sold 30 million.",
         "target_scores": {"True": 0, "False": 1, "Neither": 0}},
        {"input": "Westlife: sold 23 million.\nClaim: Westlife toured Asia.",
         "target_scores": {"True": 0, "False": 0, "Neither": 1}},
    ])
    assert [p.label for p in vita] == [1, 0, 0]
    assert vita[0].evidence == "Westlife: sold 23 million."
    assert vita[1].claim == "Westlife sold 30 million."
    # One page's claims are all held out or all trained on.
    assert len({held_out(p, 0.5) for p in vita}) == 1
    pairs = synthetic_pairs(100, seed=3)
    import random

    picked = balanced(pairs, 40, random.Random(0))
    assert len(picked) == 40 and sum(p.label for p in picked) == 20


def test_threshold_is_the_best_balanced_accuracy_and_auroc_counts_ties_half() -> None:
    scores = [0.1, 0.2, 0.35, 0.4, 0.8, 0.9]
    labels = [0, 0, 1, 0, 1, 1]
    t, acc = best_threshold(scores, labels)
    assert 0.2 < t < 0.35 or 0.4 < t < 0.8
    assert acc == pytest.approx(5 / 6, abs=0.01)
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc(scores, labels) == pytest.approx(8 / 9)


def test_paired_batches_keep_a_claim_with_its_swapped_twin() -> None:
    pairs = synthetic_pairs(200, seed=3)
    plain = batches(pairs, 16, seed=0)
    paired = batches(pairs, 16, seed=0, paired=True)
    for plan in (plain, paired):
        assert sorted(i for b in plan for i in b) == list(range(len(pairs)))
        assert max(len(b) for b in plan) <= 16
    twins = sum(len(ranked_pairs(pairs, b)) for b in paired)
    assert twins == 100  # every (right, wrong) twin shares a batch
    assert sum(len(ranked_pairs(pairs, b)) for b in plain) < twins
    batch = paired[0]
    for right, wrong in ranked_pairs(pairs, batch):
        assert pairs[batch[right]].label == 1 and pairs[batch[wrong]].label == 0
        assert pairs[batch[right]].evidence == pairs[batch[wrong]].evidence


def test_interrupted_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    data = TrainingData(train=synthetic_pairs(64, seed=5), validation=synthetic_pairs(16, 6))
    config = TrainConfig(sizes={}, batch_size=16, max_length=48, checkpoint_steps=2)
    out = tmp_path / "checker"

    class Stop(Exception):
        pass

    def stop_at_3(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        train_checker(out, tmp_path, config, data=data, progress=stop_at_3)
    assert (tmp_path / "checker.partial" / "state.pt").is_file() and not out.exists()
    steps: list[int] = []
    info = train_checker(out, tmp_path, config, data=data,
                         progress=lambda step, total, loss: steps.append(step))
    assert steps[0] == 2 and steps[-1] == 4  # resumed from the step-2 checkpoint
    assert (out / "checker.json").is_file() and not (tmp_path / "checker.partial").exists()
    assert info.training["pairs"] == 64



def test_novel_terms_counts_claim_words_the_evidence_and_question_lack() -> None:
    from retrieval.lexical import novel_terms

    assert novel_terms("Marie Curie was born in Berlin.", BIO.chunk.text) == (1, 4)
    assert novel_terms("Marie Curie was born in Berlin.", BIO.chunk.text, "Berlin?") == (0, 4)
    assert novel_terms("She married in 1895.", BIO.chunk.text) == (0, 2)  # "married" ~ prefix
    assert novel_terms("It is.", BIO.chunk.text) == (0, 0)


def test_logistic_fit_finds_the_informative_feature() -> None:
    import numpy as np

    from retrieval.checker_train import fit_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    weights, _ = fit_logistic(x, y.tolist())
    assert weights[0] > 1.0 and abs(weights[1]) < 0.5


def test_calibration_drops_a_feature_whose_weight_has_the_wrong_sign() -> None:
    import numpy as np

    from retrieval.checker_train import fit_logistic, fit_monotone

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    # Feature 2 is meant to count against support, but in this sample it goes with it.
    y = (x[:, 0] - x[:, 1] + 0.8 * x[:, 2] + 0.3 * rng.normal(size=400) > 0).astype(int)
    free, _ = fit_logistic(x, y.tolist())
    assert free[2] > 0
    weights, _ = fit_monotone(x, y.tolist(), signs=(1, -1, -1))
    assert weights[2] == 0.0 and weights[0] > 1.0 and weights[1] < -1.0
    # Nothing to drop: the same weights as the free fit.
    same, _ = fit_monotone(x, y.tolist(), signs=(1, -1, 1))
    assert np.allclose(same, free)


def test_calibration_is_fitted_on_held_out_pairs_and_the_question_is_context(
        trained: CrossEncoderGroundingChecker, tmp_path: Path) -> None:
    import shutil

    from retrieval.checker import FEATURES
    from retrieval.checker_train import recalibrate

    cal = trained.info.calibration
    assert cal["features"] == list(FEATURES)
    # The tiny checker's wrong claims name a city, job or year the evidence lacks: the
    # fitted weight of novel terms is negative.
    assert cal["weights"][FEATURES.index("novel_terms")] < 0
    evidence = ["Grace Hopper was born in Vienna in 1906. Grace Hopper worked as a surgeon."]
    question = "Where was the admiral Grace Hopper born?"
    claim = f'The answer to "{question}" is: Vienna'
    alone = trained.scores(claim, evidence)[0]
    with_question = trained.scores(claim, evidence, context=question)[0]
    assert alone is not None and with_question is not None and with_question > alone
    # Recalibrating on other held-out pairs rewrites the calibration, not the model.
    copy = tmp_path / "checker"
    shutil.copytree(trained.path, copy)
    info = recalibrate(copy, tmp_path / "cache", data=TrainingData(
        train=[], validation=synthetic_pairs(48, seed=9)))
    assert info.calibration["weights"] != cal["weights"]
    assert info.validation["pairs"] == 48 and "cross_encoder_auroc" in info.validation
    assert CrossEncoderGroundingChecker(copy).info.calibration == info.calibration


def test_wiki_source_pairs_a_stated_claim_with_an_entity_swapped_copy() -> None:
    from retrieval.checker_data import wiki_pairs

    texts = [
        "Marie Curie was a physicist and chemist. She was born in Warsaw in 1867. She moved "
        "to Paris in 1891 and studied at the University of Paris.",
        "The Danube is a river in Europe. It flows through Vienna and Budapest. It reaches "
        "the Black Sea in Romania after 2,850 kilometres.",
        "Alan Turing was an English mathematician. He was born in London in 1912. He worked "
        "at Bletchley Park during the Second World War.",
    ]
    pairs = wiki_pairs(texts, seed=1)
    assert pairs and len(pairs) % 2 == 0
    for right, wrong in zip(pairs[::2], pairs[1::2], strict=True):
        assert (right.label, wrong.label) == (1, 0) and right.source == "wiki"
        assert right.evidence == wrong.evidence and right.context == wrong.context
        assert right.claim != wrong.claim
        if right.context:  # a cloze answer claim: the question is the context
            assert right.claim.startswith(f'The answer to "{right.context}" is: ')
        else:  # the sentence as the passage states it
            assert right.claim in right.evidence


def test_a_checker_calibrated_without_the_sign_rule_says_how_to_recalibrate(
        trained: CrossEncoderGroundingChecker, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    import json
    import shutil

    old = tmp_path / "checker"
    shutil.copytree(trained.path, old)
    info = json.loads((old / "checker.json").read_text())
    info["calibration"]["weights"] = [1.1, -0.49, 2.13]  # the free fit of 2026-12-05
    (old / "checker.json").write_text(json.dumps(info))
    with caplog.at_level("WARNING", logger="retrieval.checker"):
        CrossEncoderGroundingChecker(old)
    assert "--recalibrate" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="retrieval.checker"):
        CrossEncoderGroundingChecker(trained.path)
    assert "--recalibrate" not in caplog.text
