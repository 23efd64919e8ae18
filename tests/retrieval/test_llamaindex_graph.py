"""kgrag's graph as a LlamaIndex PropertyGraphStore, read by llama-index-core's own
retrievers over a real FalkorDB graph, with the real embedder and a scripted LLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import PropertyGraphIndex
from llama_index.core.bridge.pydantic import BaseModel, Field
from llama_index.core.graph_stores.types import (
    TRIPLET_SOURCE_KEY,
    ChunkNode,
    EntityNode,
    Relation,
)
from llama_index.core.indices.property_graph import (
    CypherTemplateRetriever,
    LLMSynonymRetriever,
    TextToCypherRetriever,
    VectorContextRetriever,
)
from llama_index.core.llms import (
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

from core.embed import SentenceTransformerEmbedder
from core.errors import ReadOnlyViolation
from core.models import entity_id
from kg.store import Neo4jGraphStore
from retrieval.llamaindex_graph import KgragEmbedding, KgragPropertyGraphStore
from retrieval.text_to_cypher import extract_cypher
from tests.neo4j_server import Neo4jServer
from tests.retrieval.conftest import HandGraph, build_graph

pytestmark = pytest.mark.services

QUESTION = "Who did Marie Curie marry?"
MARIE_FACTS = {
    "Marie Curie -> born in -> Warsaw",
    "Marie Curie -> married -> Pierre Curie",
    "Marie Curie -> won -> Nobel Prize in Physics",
    "Marie Curie -> worked in -> Paris",
    "Irène Joliot-Curie -> daughter of -> Marie Curie",
}


class ScriptedLLM(CustomLLM):
    """A deterministic LLM: the reply of the first script key found in the prompt; a
    prompt no key matches fails the test. Keeps every prompt it was sent."""

    script: dict[str, str] = Field(default_factory=dict)
    prompts: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any
                 ) -> CompletionResponse:
        self.prompts.append(prompt)
        for key, reply in self.script.items():
            if key in prompt:
                return CompletionResponse(text=reply)
        raise AssertionError(f"unscripted prompt: {prompt[-300:]}")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any
                        ) -> CompletionResponseGen:
        raise AssertionError("the retrievers under test do not stream")


def texts(nodes: list[NodeWithScore]) -> set[str]:
    return {n.node.get_content() for n in nodes}


@pytest.fixture
def store(hand_graph: HandGraph) -> KgragPropertyGraphStore:
    return KgragPropertyGraphStore(hand_graph.store, entity_index=hand_graph.entity_index,
                                   embedder=hand_graph.embedder)


# --------------------------------------------------------------------------- retrievers


def test_llm_synonym_retriever_walks_the_facts_of_the_entities_the_llm_names(
        store: KgragPropertyGraphStore) -> None:
    # LlamaIndex capitalises keywords ("Marie curie"): names resolve as kgrag's do.
    llm = ScriptedLLM(script={f"QUERY: {QUESTION}": "marie curie^radium^"})
    retriever = LLMSynonymRetriever(store, llm=llm, include_text=False)
    assert texts(retriever.retrieve(QUESTION)) == MARIE_FACTS


def test_retrieved_facts_carry_the_chunk_that_states_them(
        store: KgragPropertyGraphStore, hand_graph: HandGraph) -> None:
    llm = ScriptedLLM(script={f"QUERY: {QUESTION}": "Pierre Curie"})
    nodes = LLMSynonymRetriever(store, llm=llm).retrieve(QUESTION)  # include_text
    by_id = {n.node.node_id: n.node.get_content() for n in nodes}
    married = by_id[hand_graph.chunk_ids["married"]]
    assert "Marie Curie -> married -> Pierre Curie" in married
    assert married.endswith("Marie Curie married Pierre Curie in 1895.")
    paris = by_id[hand_graph.chunk_ids["paris"]]
    assert "Pierre Curie -> born in -> Paris" in paris
    assert paris.endswith("Pierre Curie was born in Paris. Marie Curie worked in Paris.")


def test_vector_context_retriever_finds_entities_by_meaning_in_kgrags_index(
        store: KgragPropertyGraphStore, hand_graph: HandGraph) -> None:
    retriever = VectorContextRetriever(store, embed_model=KgragEmbedding(hand_graph.embedder),
                                       similarity_top_k=1, include_text=False)
    nodes = retriever.retrieve("the capital city of Poland")
    assert texts(nodes) == {"Warsaw -> capital of -> Poland", "Warsaw -> lies on -> Vistula",
                            "Marie Curie -> born in -> Warsaw"}
    assert all(n.score is not None and n.score > 0.5 for n in nodes)  # Warsaw's cosine


def test_property_graph_index_from_existing_store_uses_both_default_retrievers(
        store: KgragPropertyGraphStore, hand_graph: HandGraph) -> None:
    llm = ScriptedLLM(script={"QUERY: Which river does Warsaw lie on?": "Vistula"})
    index = PropertyGraphIndex.from_existing(
        property_graph_store=store, llm=llm, embed_model=KgragEmbedding(hand_graph.embedder))
    retriever = index.as_retriever(include_text=True, similarity_top_k=2)
    kinds = [type(r) for r in retriever.sub_retrievers]  # type: ignore[attr-defined]
    assert kinds == [LLMSynonymRetriever, VectorContextRetriever]
    nodes = retriever.retrieve("Which river does Warsaw lie on?")
    by_id = {n.node.node_id: n.node.get_content() for n in nodes}
    warsaw = by_id[hand_graph.chunk_ids["warsaw"]]
    assert "Warsaw -> lies on -> Vistula" in warsaw
    assert warsaw.endswith("Warsaw lies on the Vistula river.")


def test_text_to_cypher_retriever_gets_kgrags_schema_and_reads_the_answer(
        store: KgragPropertyGraphStore) -> None:
    cypher = ("```cypher\nMATCH (s:Entity)-[r:RELATES]->(o:Entity) WHERE s.name = "
              "'Marie Curie' AND r.predicate = 'married' RETURN o.name AS text;\n```")
    llm = ScriptedLLM(script={f"The question is:\n{QUESTION}": cypher})
    retriever = TextToCypherRetriever(store, llm=llm, allowed_output_fields=["text"],
                                      cypher_validator=extract_cypher,
                                      include_raw_response_as_metadata=True)
    [node] = retriever.retrieve(QUESTION)
    assert node.node.metadata["response"] == [{"text": "Pierre Curie"}]
    schema = llm.prompts[0]
    assert "(:Entity)-[:RELATES {predicate" in schema
    assert "'married'" in schema  # the graph's own predicates, for the model to use


def test_a_generated_query_that_would_write_is_refused(
        store: KgragPropertyGraphStore, hand_graph: HandGraph) -> None:
    llm = ScriptedLLM(script={"The question is:": "MATCH (e:Entity) DETACH DELETE e"})
    with pytest.raises(ReadOnlyViolation):
        TextToCypherRetriever(store, llm=llm).retrieve("Forget everything")
    assert hand_graph.entity("Marie Curie").name == "Marie Curie"


class Person(BaseModel):
    name: str


def test_cypher_template_retriever_runs_the_template_with_the_llms_parameters(
        store: KgragPropertyGraphStore) -> None:
    template = ("MATCH (s:Entity {name: $name})-[r:RELATES]->(o:Entity) "
                "RETURN r.predicate AS predicate, o.name AS object ORDER BY predicate")
    llm = ScriptedLLM(script={"Where was Pierre Curie born": '{"name": "Pierre Curie"}'})
    retriever = CypherTemplateRetriever(store, output_cls=Person, cypher_query=template,
                                        llm=llm)
    [node] = retriever.retrieve("Where was Pierre Curie born, and what did he win?")
    assert node.node.get_content() == str([
        {"predicate": "born in", "object": "Paris"},
        {"predicate": "won", "object": "Nobel Prize in Physics"},
    ])


# --------------------------------------------------------------------------- store methods


def test_get_takes_kgrag_ids_names_and_chunk_ids(store: KgragPropertyGraphStore,
                                                 hand_graph: HandGraph) -> None:
    chunk = hand_graph.chunk_ids["married"]
    nodes = store.get(ids=[entity_id("Marie Curie"), "PIERRE CURIE", chunk, "Nobody",
                           "Marie Curie"])
    assert [type(n) for n in nodes] == [EntityNode, EntityNode, ChunkNode]
    marie, pierre, text = nodes
    assert (marie.id, marie.label, marie.properties["id"]) == (
        "Marie Curie", "Person", entity_id("Marie Curie"))
    assert marie.properties["description"] == "Polish-French physicist and chemist"
    assert pierre.id == "Pierre Curie"
    assert (text.id, str(text), text.properties["doc_id"]) == (
        chunk, "Marie Curie married Pierre Curie in 1895.", "doc_married")
    assert store.get(ids=[]) == []


def test_get_by_properties(store: KgragPropertyGraphStore, hand_graph: HandGraph) -> None:
    assert sorted(n.id for n in store.get(properties={"type": "City"})) == ["Paris", "Warsaw"]
    assert [n.id for n in store.get(properties={"doc_id": "doc_warsaw"})] == [
        hand_graph.chunk_ids["warsaw"]]
    assert store.get(properties={"type": "City", "doc_id": "doc_warsaw"}) == []
    assert [n.id for n in store.get(properties={"type": "Person"},
                                    ids=["Warsaw", "Marie Curie"])] == ["Marie Curie"]
    everything = store.get()
    assert len(everything) == 19 + 9  # entities + chunks of the hand graph


def test_get_llama_nodes_are_the_chunks(store: KgragPropertyGraphStore,
                                        hand_graph: HandGraph) -> None:
    chunk = hand_graph.chunk_ids["nobel"]
    [node] = store.get_llama_nodes([chunk, entity_id("Marie Curie")])
    assert isinstance(node, TextNode)
    assert node.node_id == chunk
    assert node.text.startswith("Marie Curie, Pierre Curie and Henri Becquerel won")
    assert node.metadata["doc_id"] == "doc_nobel"


def test_get_triplets_filters(store: KgragPropertyGraphStore, hand_graph: HandGraph) -> None:
    def strs(found: list[Any]) -> set[str]:
        return {f"{s.id} -> {r.label} -> {o.id}" for s, r, o in found}

    assert strs(store.get_triplets(relation_names=["won"])) == {
        f"{p} -> won -> Nobel Prize in Physics"
        for p in ("Marie Curie", "Pierre Curie", "Henri Becquerel")}
    assert strs(store.get_triplets(entity_names=["Warsaw"], relation_names=["lies on"])) == {
        "Warsaw -> lies on -> Vistula"}
    paris = hand_graph.chunk_ids["paris"]
    found = store.get_triplets(properties={TRIPLET_SOURCE_KEY: paris})
    assert strs(found) == {"Pierre Curie -> born in -> Paris",
                           "Marie Curie -> worked in -> Paris"}
    assert all(r.properties["chunk_id"] == paris for _, r, _ in found)
    assert store.get_triplets() == []


def test_get_rel_map_goes_deeper_and_stops_at_the_limit(
        store: KgragPropertyGraphStore) -> None:
    irene = store.get(ids=["Irène Joliot-Curie"])
    one_hop = store.get_rel_map(irene, depth=1)
    assert [f"{s.id} -> {r.label} -> {o.id}" for s, r, o in one_hop] == [
        "Irène Joliot-Curie -> daughter of -> Marie Curie"]
    two_hops = {f"{s.id} -> {r.label} -> {o.id}" for s, r, o in store.get_rel_map(irene)}
    assert two_hops == MARIE_FACTS
    assert len(store.get_rel_map(irene, depth=3, limit=4)) == 4
    ignored = store.get_rel_map(store.get(ids=["Marie Curie"]), depth=1,
                                ignore_rels=["born in", "won"])
    assert {r.label for _, r, _ in ignored} == {"married", "worked in", "daughter of"}


def test_vector_query_returns_entities_and_cosines(store: KgragPropertyGraphStore) -> None:
    nodes, scores = store.vector_query(
        VectorStoreQuery(query_str="the longest river in Poland", similarity_top_k=2))
    assert nodes[0].id == "Vistula"
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5
    with pytest.raises(ValueError, match="KgragEmbedding"):
        store.vector_query(VectorStoreQuery(query_embedding=[0.1] * 8))


def test_without_kgrags_entity_index_there_are_no_vector_queries(
        hand_graph: HandGraph) -> None:
    store = KgragPropertyGraphStore(hand_graph.store)
    assert store.supports_structured_queries and not store.supports_vector_queries
    with pytest.raises(ValueError, match="entity index"):
        store.vector_query(VectorStoreQuery(query_str="Warsaw"))
    llm = ScriptedLLM()
    index = PropertyGraphIndex.from_existing(property_graph_store=store, llm=llm,
                                             embed_kg_nodes=False)
    kinds = [type(r) for r in index.as_retriever().sub_retrievers]  # type: ignore[attr-defined]
    assert kinds == [LLMSynonymRetriever]


def test_writes_through_llamaindex_are_refused(store: KgragPropertyGraphStore,
                                              hand_graph: HandGraph) -> None:
    before = hand_graph.store.stats()
    writes = [
        lambda: store.upsert_nodes([EntityNode(name="Albert Einstein")]),
        lambda: store.upsert_relations([Relation(label="knew", source_id="Marie Curie",
                                                 target_id="Albert Einstein")]),
        lambda: store.upsert_llama_nodes([TextNode(text="Einstein visited Paris.")]),
        lambda: store.delete(entity_names=["Marie Curie"]),
        lambda: store.delete_llama_nodes(ref_doc_ids=["doc_married"]),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyViolation, match="kgrag ingest"):
            write()
    assert hand_graph.store.stats() == before


# --------------------------------------------------------------------------- Neo4j


@pytest.fixture
def neo4j_graph(neo4j_server: Neo4jServer, embedder: SentenceTransformerEmbedder,
                tmp_path: Path) -> Iterator[HandGraph]:
    """The same hand-built graph on the session's real Neo4j."""
    neo = Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password,
                          neo4j_server.database)
    neo.ensure_schema()
    neo.clear()
    try:
        yield build_graph(neo, embedder, tmp_path / "indexes")  # type: ignore[arg-type]
    finally:
        neo.clear()
        neo.close()


@pytest.mark.neo4j
def test_the_same_store_reads_a_neo4j_graph(neo4j_graph: HandGraph) -> None:
    store = KgragPropertyGraphStore(neo4j_graph.store, entity_index=neo4j_graph.entity_index,
                                    embedder=neo4j_graph.embedder)
    llm = ScriptedLLM(script={f"QUERY: {QUESTION}": "marie curie"})
    assert texts(LLMSynonymRetriever(store, llm=llm, include_text=False).retrieve(QUESTION)
                 ) == MARIE_FACTS
    vector = VectorContextRetriever(store, embed_model=KgragEmbedding(neo4j_graph.embedder),
                                    similarity_top_k=1, include_text=False)
    assert "Warsaw -> lies on -> Vistula" in texts(vector.retrieve("the capital city of Poland"))
    assert sorted(n.id for n in store.get(properties={"type": "City"})) == ["Paris", "Warsaw"]
    assert len(store.get()) == 19 + 9
    assert len(store.get_triplets(relation_names=["has member"])) == 8
    assert "'married'" in store.get_schema_str()
    with pytest.raises(ReadOnlyViolation):
        store.upsert_nodes([EntityNode(name="Albert Einstein")])
