"""Grounding verifier (MiniCheck style) and the KALMV diagnosis."""

from __future__ import annotations

import pytest

from core.answer import Sentence, Triple
from core.embed import SentenceTransformerEmbedder
from core.llm.base import CompletionRequest
from core.llm.testing import ScriptedChatModel
from core.models import Chunk
from retrieval.chunk_rag import ScoredChunk
from retrieval.generate import Sources
from retrieval.verify import (
    Diagnoser,
    EmbeddingGroundingChecker,
    GroundingVerifier,
    LLMGroundingChecker,
    split_pieces,
)
from tests.retrieval.conftest import qa_responder


def chunk(key: str, text: str) -> ScoredChunk:
    return ScoredChunk(Chunk(id=Chunk.make_id(f"doc_{key}", 0, text), doc_id=f"doc_{key}",
                             text=text, start=0, end=len(text), position=0), 0.9, "vector")


BIO = chunk("bio", "Marie Curie was born in Warsaw in 1867. She married Pierre Curie in 1895. "
                   "She won the Nobel Prize in Physics in 1903.")
RIVER = chunk("river", "The Danube flows through Vienna and Budapest to the Black Sea.")
FACT = Triple(subject="Marie Curie", predicate="born in", object="Warsaw", subject_id="e1",
              object_id="e2", chunk_id=BIO.chunk.id)
SOURCES = Sources.number([BIO, RIVER], [FACT])


def cite(text: str, *ids: str) -> Sentence:
    return Sentence(text=text, citations=list(ids))


def test_embedding_checker_marks_the_unsupported_sentence(
        embedder: SentenceTransformerEmbedder) -> None:
    verifier = GroundingVerifier(EmbeddingGroundingChecker(embedder), threshold=0.5)
    out = verifier.verify([
        cite("Marie Curie was born in Warsaw.", BIO.chunk.id),
        cite("Marie Curie was born in Berlin in 1901.", BIO.chunk.id),
        cite("Marie Curie married Pierre Curie.", RIVER.chunk.id),  # cites the wrong chunk
    ], SOURCES)
    assert [s.verification.label for s in out] == ["supported", "unsupported", "supported"]
    assert out[0].verification.evidence == [BIO.chunk.id] == out[0].citations
    assert out[0].verification.score is not None and out[1].verification.score is not None
    assert out[0].verification.score > out[1].verification.score
    assert out[1].citations == []  # nothing supports it: it cites nothing
    # The wrong citation is replaced by the chunk of the context that supports the sentence.
    assert out[2].citations == [BIO.chunk.id]
    assert out[2].verification.checked == [RIVER.chunk.id, BIO.chunk.id, FACT.id]


def test_llm_checker_asks_per_sentence_and_marks_the_unsupported_one() -> None:
    def judge(request: CompletionRequest) -> dict[str, bool]:
        claim = request.messages[-1]["content"].split("Claim: ")[1]
        return {"supported": "Warsaw" in claim}

    llm = ScriptedChatModel(default=qa_responder(grounding=judge))
    verifier = GroundingVerifier(LLMGroundingChecker(llm))
    out = verifier.verify([cite("Marie Curie was born in Warsaw.", BIO.chunk.id, FACT.id),
                           cite("Marie Curie was born in Lyon.", BIO.chunk.id)], SOURCES)
    assert [s.verification.label for s in out] == ["supported", "unsupported"]
    assert [s.verification.score for s in out] == [1.0, 0.0]
    # One call each: the first claim stopped at its first supporting piece (of two: the
    # chunk and the cited facts); the second cited one chunk, which is one piece.
    assert llm.calls == 2
    assert "Marie Curie was born in Warsaw in 1867." in llm.requests[0].messages[-1]["content"]


def test_llm_checker_checks_at_most_max_pieces() -> None:
    long_text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(120))
    big = chunk("big", long_text)
    assert len(split_pieces(long_text, 200)) >= 3
    llm = ScriptedChatModel(default=qa_responder(grounding={"supported": False}))
    verifier = GroundingVerifier(LLMGroundingChecker(llm, max_pieces=2))
    out = verifier.verify([cite("Topic 7 is discussed.", big.chunk.id)],
                          Sources.number([big], []))
    assert out[0].verification.label == "unsupported" and llm.calls == 2


def test_uncited_sentence_is_checked_against_all_evidence_and_refusals_are_not(
        embedder: SentenceTransformerEmbedder) -> None:
    verifier = GroundingVerifier(EmbeddingGroundingChecker(embedder))
    out = verifier.verify([cite("The Danube flows through Vienna.")], SOURCES)
    assert out[0].verification.label == "supported"
    assert out[0].verification.evidence == [RIVER.chunk.id]
    refusal = verifier.verify([cite("The sources do not say who.")], SOURCES,
                              cannot_answer=True)
    assert refusal[0].verification.label == "unverified"


class StandInChecker:
    """A grounding checker stand-in with fixed scores per evidence piece (the real
    checkers are tested above and in test_checker.py): what is under test is which
    sources the verifier cites from those scores."""

    name = "stand-in"
    exhaustive = False
    piece_words = 200

    def __init__(self, scores: dict[str, float]) -> None:
        self.table = scores

    def scores(self, claim: str, pieces: list[str], question: str = "") -> list[float]:
        return [self.table.get(p, 0.0) for p in pieces]


STUDIED = Triple(subject="Marie Curie", predicate="studied at", object="University of Paris",
                 subject_id="e1", object_id="e3", chunk_id=BIO.chunk.id)
DIRECTED = Triple(subject="Irene Joliot-Curie", predicate="directed",
                  object="Radium Institute", subject_id="e4", object_id="e5",
                  chunk_id=BIO.chunk.id)
TWO_FACTS = Sources.number([], [STUDIED, DIRECTED])
JOINED = f"{STUDIED.text()}. {DIRECTED.text()}."


def test_a_sentence_cites_only_the_facts_that_back_it() -> None:
    # One cited fact backs the sentence alone: the two facts read together score higher
    # still, but the sentence cites only the fact that backs it, not the one along for
    # the ride.
    checker = StandInChecker({f"{STUDIED.text()}.": 0.2, f"{DIRECTED.text()}.": 0.8,
                              JOINED: 0.9})
    out = GroundingVerifier(checker, threshold=0.5).verify(
        [cite("Her daughter directed the Radium Institute.", STUDIED.id, DIRECTED.id)],
        TWO_FACTS)
    assert out[0].verification.label == "supported"
    assert out[0].citations == [DIRECTED.id]
    assert out[0].verification.score == 0.9  # the sentence's support is still its best

    # A multi-hop sentence that only the two facts together back cites both.
    checker = StandInChecker({f"{STUDIED.text()}.": 0.3, f"{DIRECTED.text()}.": 0.3,
                              JOINED: 0.7})
    out = GroundingVerifier(checker, threshold=0.5).verify(
        [cite("A Paris graduate's daughter directed an institute.", STUDIED.id,
              DIRECTED.id)], TWO_FACTS)
    assert out[0].citations == [STUDIED.id, DIRECTED.id]


@pytest.fixture
def diagnoser(embedder: SentenceTransformerEmbedder) -> Diagnoser:
    return Diagnoser(embedder, relevance_threshold=0.3)


def supported(label: str) -> Sentence:
    s = cite("x")
    return s.model_copy(update={"verification": s.verification.model_copy(
        update={"label": label, "score": 1.0 if label == "supported" else 0.0})})


def test_diagnosis_separates_retrieval_from_generation_errors(diagnoser: Diagnoser) -> None:
    q = "Where was Marie Curie born?"
    ok = diagnoser.diagnose(q, SOURCES, [supported("supported")], cannot_answer=False)
    assert ok.label == "ok" and ok.relevance > 0.5
    gen = diagnoser.diagnose(q, SOURCES, [supported("supported"), supported("unsupported")],
                             cannot_answer=False)
    assert gen.label == "generation_error" and gen.support == 0.5
    off_topic = Sources.number([RIVER], [])
    ret = diagnoser.diagnose(q, off_topic, [supported("supported")], cannot_answer=False)
    assert ret.label == "retrieval_error" and ret.relevance < 0.3
    assert diagnoser.diagnose(q, Sources(), [], cannot_answer=True).label == "retrieval_error"
    refused = diagnoser.diagnose(q, SOURCES, [supported("unverified")], cannot_answer=True)
    assert refused.label == "retrieval_error"
