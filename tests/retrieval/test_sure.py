"""SuRe answers: candidates, candidate-conditioned summaries, pointwise check, pairwise
ranking; the chosen candidate becomes the short answer and its summary the cited rationale.
The LLM is scripted (each prompt kind answered by its system line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.llm.base import CompletionRequest
from core.llm.testing import ScriptedChatModel
from retrieval.sure import SuReGenerator
from tests.retrieval.conftest import HandGraph, kind_of, qa_responder
from tests.retrieval.test_qa_generate import BORN, sources
from tests.retrieval.test_qa_pipeline import pipeline

QUESTION = "Where was Marie Curie born?"


def summary_for(request: CompletionRequest) -> dict[str, Any]:
    """A summary that names the candidate it was asked about, citing source 1."""
    answer = request.messages[-1]["content"].split("Answer: ")[1].split("\n")[0]
    return {"summary": f"Source 1 says Marie Curie was born in {answer}.", "citations": ["1"]}


def kinds(fake: ScriptedChatModel) -> list[str]:
    return [kind_of(r) for r in fake.requests]


def test_best_ranked_candidate_is_the_short_answer_with_its_cited_summary() -> None:
    fake = ScriptedChatModel(default=qa_responder(
        sure_candidates={"candidates": ["Paris", "Warsaw"]},
        sure_summary=summary_for, sure_verify={"valid": True},
        sure_rank={"better": "B"}))
    out = SuReGenerator(fake, candidates=2).generate(QUESTION, sources())
    assert out.short_answer == "Warsaw" and not out.cannot_answer
    assert [s.text for s in out.sentences] == [
        "Warsaw.", "Source 1 says Marie Curie was born in Warsaw."]
    assert all(s.citations == [BORN.chunk.id] for s in out.sentences)
    assert [(c["answer"], c["valid"], c["wins"]) for c in out.rationale] == [
        ("Paris", True, 0), ("Warsaw", True, 1)]
    # 1 candidates call + 2 x (summary + check) + 1 pairwise comparison.
    assert kinds(fake) == ["sure_candidates", "sure_summary", "sure_verify", "sure_summary",
                           "sure_verify", "sure_rank"]
    # The summary call is conditioned on its candidate; the ranking sees both summaries.
    assert "Answer: Paris" in fake.requests[1].messages[-1]["content"]
    rank = fake.requests[-1].messages[-1]["content"]
    assert "Summary A: Source 1 says Marie Curie was born in Paris." in rank
    assert "Summary B: Source 1 says Marie Curie was born in Warsaw." in rank


def test_rejected_summary_drops_its_candidate_without_a_ranking_call() -> None:
    def verdict(request: CompletionRequest) -> dict[str, bool]:
        return {"valid": "Answer: Warsaw" in request.messages[-1]["content"]}

    fake = ScriptedChatModel(default=qa_responder(
        sure_candidates={"candidates": ["Paris", "Warsaw"]},
        sure_summary=summary_for, sure_verify=verdict))
    out = SuReGenerator(fake, candidates=2).generate(QUESTION, sources())
    assert out.short_answer == "Warsaw"
    assert "sure_rank" not in kinds(fake) and fake.calls == 5
    assert [c["valid"] for c in out.rationale] == [False, True]


def test_no_valid_candidate_is_a_refusal_not_a_guess() -> None:
    fake = ScriptedChatModel(default=qa_responder(
        sure_candidates={"candidates": ["Paris"]},
        sure_summary=summary_for, sure_verify={"valid": False}))
    out = SuReGenerator(fake, candidates=2).generate(QUESTION, sources())
    assert out.cannot_answer and out.short_answer == ""
    assert out.sentences[0].text == "The sources do not say where was Marie Curie born."
    assert out.rationale[0]["answer"] == "Paris" and not out.rationale[0]["valid"]


def test_candidates_are_deduplicated_cleaned_and_capped_at_k() -> None:
    fake = ScriptedChatModel(default=qa_responder(
        sure_candidates={"candidates": [" Warsaw. ", "warsaw", "The sources do not say",
                                        "", "Paris", "Berlin"]},
        sure_summary=summary_for, sure_verify={"valid": True}, sure_rank={"better": "A"}))
    out = SuReGenerator(fake, candidates=2).generate(QUESTION, sources())
    assert [c["answer"] for c in out.rationale] == ["Warsaw", "Paris"]
    assert out.short_answer == "Warsaw"  # A (the first) won the one comparison


def test_no_sources_means_no_call() -> None:
    fake = ScriptedChatModel()
    out = SuReGenerator(fake).generate(QUESTION, sources().__class__())
    assert out.cannot_answer and fake.calls == 0


@pytest.mark.services
def test_pipeline_with_answer_method_sure_returns_short_answer_and_candidates(
        hand_graph: HandGraph, tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=qa_responder(
        sure_candidates={"candidates": ["Pierre Curie"]},
        sure_summary={"summary": "Marie Curie married Pierre Curie.", "citations": ["1"]},
        sure_verify={"valid": True}, grounding={"supported": True}))
    qa = pipeline(hand_graph, tmp_path, fake, answer_method="sure")
    a = qa.ask("Who did Marie Curie marry?", mode="rag")
    assert a.short_answer == "Pierre Curie"
    assert [(c.answer, c.valid) for c in a.candidates] == [("Pierre Curie", True)]
    assert a.sentences[0].text == "Pierre Curie."
    # The rationale is verified like any answer sentence.
    assert {s.verification.label for s in a.sentences} == {"supported"}
    assert a.to_json()["short_answer"] == "Pierre Curie"
    assert a.cost.llm_calls == fake.calls

