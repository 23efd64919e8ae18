"""kgrag as a LlamaIndex retriever and query engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import QueryBundle

from core.llm.factory import make_chat_model
from core.llm.testing import ScriptedChatModel
from core.settings import load_settings
from retrieval.llamaindex import KgragQueryEngine, KgragRetriever
from retrieval.pipeline import QuestionAnsweringPipeline
from tests.retrieval.conftest import HandGraph, answer_json, qa_responder

pytestmark = pytest.mark.services


def make(g: HandGraph, tmp_path: Path, fake: ScriptedChatModel) -> QuestionAnsweringPipeline:
    settings = load_settings(data_dir=tmp_path, llm_cache=False, tog_sufficiency="heuristic",
                             tog_width=1)
    return QuestionAnsweringPipeline.from_parts(
        settings, g.store, g.embedder, make_chat_model(settings, backend=fake), g.chunk_index,
        g.entity_index)


def test_retriever_returns_chunks_and_reasoning_paths_without_llm_calls(
        hand_graph: HandGraph, tmp_path: Path) -> None:
    fake = ScriptedChatModel()  # any call would fail the test
    retriever = KgragRetriever(make(hand_graph, tmp_path, fake), mode="tog")
    nodes = retriever.retrieve(QueryBundle("Who did Marie Curie marry?"))
    chunks = [n for n in nodes if n.node.metadata["kind"] == "chunk"]
    paths = [n for n in nodes if n.node.metadata["kind"] == "reasoning_path"]
    assert chunks[0].node.node_id == hand_graph.chunk_ids["married"]
    assert chunks[0].node.metadata["doc_id"] == "doc_married"
    assert [p.node.get_content() for p in paths] == ["Marie Curie married Pierre Curie"]
    assert paths[0].node.metadata["chunk_ids"] == [hand_graph.chunk_ids["married"]]
    assert all(n.score is not None for n in nodes)
    assert fake.calls == 0


def test_query_engine_returns_the_verified_answer(hand_graph: HandGraph,
                                                  tmp_path: Path) -> None:
    fake = ScriptedChatModel(default=qa_responder(
        answer=answer_json(("Marie Curie married Pierre Curie.", ["1"])),
        grounding={"supported": True}))
    engine = KgragQueryEngine(pipeline=make(hand_graph, tmp_path, fake), mode="tog")
    response = engine.query("Who did Marie Curie marry?")
    assert isinstance(response, Response)
    assert response.response == "Marie Curie married Pierre Curie."
    assert response.source_nodes[0].node.node_id == hand_graph.chunk_ids["married"]
    answer = (response.metadata or {})["answer"]
    assert answer["sentences"][0]["verification"]["label"] == "supported"
