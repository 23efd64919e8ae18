"""The question-answering pipeline on the hand-built graph: routes, fallback, the rectify
loop and its bound, cost. The LLM is scripted; everything else is real."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.llm.base import CompletionRequest
from core.llm.factory import make_chat_model
from core.llm.testing import ScriptedChatModel
from core.settings import load_settings
from retrieval import prompts
from retrieval.pipeline import QuestionAnsweringPipeline
from tests.retrieval.conftest import HandGraph, answer_json, kind_of, qa_responder

pytestmark = pytest.mark.services


def pipeline(g: HandGraph, tmp_path: Path, fake: ScriptedChatModel, **overrides: Any
             ) -> QuestionAnsweringPipeline:
    settings = load_settings(data_dir=tmp_path / "data", llm_cache=False,
                             tog_sufficiency="heuristic", **overrides)
    llm = make_chat_model(settings, backend=fake)
    return QuestionAnsweringPipeline.from_parts(settings, g.store, g.embedder, llm,
                                                g.chunk_index, g.entity_index)


def test_tog_answer_with_paths_citations_verdicts_and_cost(hand_graph: HandGraph,
                                                           tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=qa_responder(
        answer=answer_json(("Marie Curie married Pierre Curie.", ["1", "T1"])),
        grounding={"supported": True}))
    qa = pipeline(hand_graph, tmp_path, fake, tog_width=1)
    a = qa.ask("Who did Marie Curie marry?", mode="tog")
    assert a.mode == "tog" and a.route == "chosen by the caller"
    assert [p.text() for p in a.paths] == ["Marie Curie married Pierre Curie"]
    assert a.facts[0].marker == "T1" and a.facts[0].triple.object == "Pierre Curie"
    assert a.evidence[0].id == hand_graph.chunk_ids["married"]
    # The LLM checker stops at the first source that supports the sentence: the chunk.
    assert a.sentences[0].citations == [a.evidence[0].id]
    assert a.sentences[0].verification.checked == [a.evidence[0].id, a.facts[0].id]
    assert a.sentences[0].verification.label == "supported"
    assert a.diagnosis == "ok" and [r.action for r in a.rounds] == ["answer"]
    assert a.steps and a.steps[0].kept[0].name == "Pierre Curie"
    # the short answer, the sentences that support it, one grounding check
    assert a.cost.llm_calls == fake.calls == 3
    assert a.cost.prompt_tokens > 0 and a.cost.seconds > 0
    data = a.to_json()
    assert {"answer", "sentences", "paths", "evidence", "cost"} <= set(data)
    assert data["paths"][0]["triples"][0]["id"] == a.facts[0].id


def test_rectify_loop_never_runs_more_than_max_rounds(hand_graph: HandGraph,
                                                      tmp_path: Path) -> None:
    # Every answer is unsupported: each round is a generation error -> regenerate, then,
    # since rewriting did not help, re-retrieve.
    fake = ScriptedChatModel(default=qa_responder(
        answer=answer_json(("Marie Curie was born in Berlin.", ["1"])),
        grounding={"supported": False}))
    qa = pipeline(hand_graph, tmp_path, fake, verify_max_rounds=2)
    a = qa.ask("Where was Marie Curie born?", mode="rag")
    assert [r.action for r in a.rounds] == ["answer", "regenerate", "re-retrieve"]
    assert all(r.diagnosis == "generation_error" for r in a.rounds)
    answers = [r for r in fake.requests if kind_of(r) == "answer"
               and r.messages[-1]["content"] != prompts.SUPPORT_USER]  # short-first: 2 each
    assert len(answers) == 3
    assert prompts.ANSWER_STRICT in answers[1].messages[0]["content"]
    assert a.sentences[0].verification.label == "unsupported"  # shown, and marked

    fake0 = ScriptedChatModel(default=fake.default)
    a0 = pipeline(hand_graph, tmp_path, fake0, verify_max_rounds=0).ask(
        "Where was Marie Curie born?", mode="rag")
    assert len(a0.rounds) == 1


def test_a_rewrite_that_verifies_no_better_keeps_the_first_answer(hand_graph: HandGraph,
                                                                  tmp_path: Path) -> None:
    # Both rounds are unsupported alike: the strict rewrite (a sentence as its short
    # answer) does not replace the first round's answer.
    def answer(request: CompletionRequest) -> str:
        if prompts.ANSWER_STRICT in request.messages[0]["content"]:
            return answer_json(("Marie Curie was born in a city.", ["1"]),
                               short_answer="Marie Curie was born in a city")
        return answer_json(("Marie Curie was born in Berlin.", ["1"]), short_answer="Berlin")

    fake = ScriptedChatModel(default=qa_responder(answer=answer,
                                                  grounding={"supported": False}))
    a = pipeline(hand_graph, tmp_path, fake, verify_max_rounds=1).ask(
        "Where was Marie Curie born?", mode="rag")
    assert [r.action for r in a.rounds] == ["answer", "regenerate"]
    assert [r.short_answer for r in a.rounds] == ["Berlin", "Marie Curie was born in a city"]
    assert a.short_answer == "Berlin"


def test_retrieval_errors_re_retrieve_wider_and_stay_bounded(hand_graph: HandGraph,
                                                             tmp_path: Path) -> None:
    seen: list[int] = []

    def refuse(request: CompletionRequest) -> str:
        seen.append(len(re.findall(r"^\[\d+\]", request.messages[-1]["content"], re.M)))
        return answer_json(("The sources do not say.", []), cannot_answer=True)

    fake = ScriptedChatModel(default=qa_responder(answer=refuse))
    qa = pipeline(hand_graph, tmp_path, fake, verify_max_rounds=3, rag_top_k=2)
    a = qa.ask("What is the boiling point of mercury?", mode="rag")
    assert [r.action for r in a.rounds] == ["answer", "re-retrieve", "re-retrieve",
                                            "re-retrieve"]
    assert all(r.diagnosis == "retrieval_error" for r in a.rounds)
    assert seen == [2, 4, 6, 8]  # each re-retrieval asks for more chunks
    assert a.cannot_answer and a.answer.startswith("The sources do not say")


def test_no_linked_entity_falls_back_to_chunk_retrieval(hand_graph: HandGraph,
                                                        tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=qa_responder(
        answer=answer_json(("The Danube reaches the Black Sea.", ["1"])),
        grounding={"supported": True}))
    a = pipeline(hand_graph, tmp_path, fake).ask("Which river reaches the Black Sea?",
                                                 mode="tog")
    assert a.topic_entities == [] and a.paths == []
    assert "fell back to chunk retrieval" in a.rounds[0].note
    assert a.evidence[0].id == hand_graph.chunk_ids["danube"]
    assert a.evidence[0].source == "vector"


def test_dead_end_search_adds_chunk_retrieval(hand_graph: HandGraph, tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=qa_responder(
        answer=answer_json(("Lonely Island has a lighthouse.", ["1"])),
        grounding={"supported": True}))
    a = pipeline(hand_graph, tmp_path, fake).ask("What is on Lonely Island?", mode="tog")
    assert a.topic_entities[0].name == "Lonely Island"
    assert a.steps and a.steps[0].note  # the dead end is in the trace
    assert a.evidence[0].id == hand_graph.chunk_ids["island"]


def test_auto_routes_greetings_direct_and_multi_hop_to_tog(hand_graph: HandGraph,
                                                           tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=qa_responder(
        direct={"answer": "Hello! Ask me about your documents."},
        answer=answer_json(("Warsaw lies on the Vistula.", ["1"])),
        grounding={"supported": True}))
    qa = pipeline(hand_graph, tmp_path, fake)
    hello = qa.ask("Hello!")
    assert hello.mode == "direct" and hello.evidence == [] and hello.rounds == []
    assert hello.sentences[0].verification.label == "unverified"
    multi = qa.ask("Which river flows through the city where Marie Curie was born?")
    assert multi.mode == "tog" and multi.topic_entities[0].name == "Marie Curie"
    assert any("Warsaw lies on Vistula" in p.text() for p in multi.paths)


def test_empty_question_is_a_user_error(hand_graph: HandGraph, tmp_path: Path) -> None:
    from core.errors import KgragError

    with pytest.raises(KgragError, match="empty"):
        pipeline(hand_graph, tmp_path, ScriptedChatModel()).ask("   ")
