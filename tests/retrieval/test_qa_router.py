"""Adaptive-RAG routing: direct, single-step chunk RAG or multi-hop ToG."""

from __future__ import annotations

import pytest

from core.errors import LLMCallError
from core.llm.testing import ScriptedChatModel
from core.models import Entity, entity_id
from retrieval.linking import LinkedEntity
from retrieval.router import HeuristicRouter, LLMRouter
from tests.retrieval.conftest import qa_responder


def linked(*names: str) -> list[LinkedEntity]:
    return [LinkedEntity(Entity(id=entity_id(n), name=n), n, 1.0, "name") for n in names]


@pytest.mark.parametrize(("question", "entities", "mode"), [
    ("Hello!", [], "direct"),
    ("thanks", [], "direct"),
    ("What is 17 * 3?", [], "direct"),
    ("2+2", [], "direct"),
    ("Where was Marie Curie born?", ["Marie Curie"], "rag"),
    ("Where did the Danube flow?", [], "rag"),  # nothing linked: chunk retrieval
    ("Who shared the Nobel Prize with Marie Curie?", ["Nobel Prize", "Marie Curie"], "tog"),
    ("What is the capital of the country where Marie Curie was born?", ["Marie Curie"],
     "tog"),
    ("Who is the husband of the woman who discovered polonium?", ["polonium"], "tog"),
    ("What was Marie Curie's husband's job?", ["Marie Curie"], "tog"),
    ("Which river flows through the city where Marie Curie was born?", ["Marie Curie"],
     "tog"),
    ("When did the man who married Marie Curie die?", ["Marie Curie"], "tog"),
    ("Which institute did the daughter of Marie Curie direct?", ["Marie Curie"], "tog"),
])
def test_heuristic_routes(question: str, entities: list[str], mode: str) -> None:
    route = HeuristicRouter().route(question, linked(*entities))
    assert route.mode == mode, route.reason
    assert route.reason


def test_llm_router_follows_the_model_but_needs_an_entity_for_multi_hop() -> None:
    llm = ScriptedChatModel([qa_responder(router={"route": "multi"}),
                             qa_responder(router={"route": "multi"}),
                             qa_responder(router={"route": "direct"})])
    router = LLMRouter(llm)
    assert router.route("Where was Marie Curie born?", linked("Marie Curie")).mode == "tog"
    assert router.route("Where was Marie Curie born?", []).mode == "rag"
    assert router.route("Where was Marie Curie born?", linked("Marie Curie")).mode == "direct"
    assert llm.calls == 3


def test_llm_router_falls_back_to_the_heuristic_when_the_call_fails() -> None:
    llm = ScriptedChatModel(default=LLMCallError("model down"))
    route = LLMRouter(llm).route("Hello!", [])
    assert route.mode == "direct" and route.reason == "greeting"
