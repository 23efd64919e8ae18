"""Think-on-Graph beam search on the hand-built graph (real FalkorDB, real embedder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.llm.testing import ScriptedChatModel
from core.models import entity_id
from retrieval.linking import LinkedEntity
from retrieval.pruning import BM25Scorer, EmbeddingScorer, LLMScorer
from retrieval.tog import HeuristicSufficiency, LLMSufficiency, ThinkOnGraphReasoner
from tests.retrieval.conftest import HandGraph, qa_responder

pytestmark = pytest.mark.services


def topic(g: HandGraph, name: str) -> LinkedEntity:
    return LinkedEntity(g.entity(name), name, 1.0, "name")


def test_width_and_depth_are_respected(hand_graph: HandGraph) -> None:
    g = hand_graph
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), width=2, depth=2)
    found = reasoner.search("What is the capital of the country where Marie Curie was born?",
                            [topic(g, "Marie Curie")])
    assert [s.depth for s in found.steps] == [1, 2]  # no stop check: runs to depth D
    assert found.stop_reason == "depth limit 2"
    for step in found.steps:
        assert len(step.frontier) <= 2 and len(step.kept) <= 2
        kept_per_entity: dict[str, int] = {}
        for r in step.relations:
            kept_per_entity[r.entity] = kept_per_entity.get(r.entity, 0) + r.kept
        assert max(kept_per_entity.values()) <= 2  # top-W relations per frontier entity
    assert 0 < len(found.paths) <= 2
    assert all(len(p.triples) <= 2 for p in found.paths)
    # The two-hop answer path was found: Marie Curie -born in-> Warsaw -capital of-> Poland.
    texts = [p.text() for p in found.paths]
    assert "Marie Curie born in Warsaw; Warsaw capital of Poland" in texts


@pytest.mark.parametrize("scorer", ["embedding", "bm25"])
def test_relation_pruning_keeps_the_relation_the_question_asks_about(
        hand_graph: HandGraph, scorer: str) -> None:
    g = hand_graph
    pruner = EmbeddingScorer(g.embedder) if scorer == "embedding" else BM25Scorer()
    reasoner = ThinkOnGraphReasoner(g.store, pruner, width=1, depth=1)
    found = reasoner.search("Who did Marie Curie marry? Who was she married to?",
                            [topic(g, "Marie Curie")])
    kept = [r.predicate for r in found.steps[0].relations if r.kept]
    assert kept == ["married"]
    assert {r.predicate for r in found.steps[0].relations} >= {"born in", "won", "worked in",
                                                                "daughter of"}
    assert [p.text() for p in found.paths] == ["Marie Curie married Pierre Curie"]


def test_llm_pruning_follows_the_model_scores(hand_graph: HandGraph) -> None:
    g = hand_graph

    def score_options(request: object) -> dict[str, list[int]]:
        listing = request.messages[-1]["content"]  # type: ignore[attr-defined]
        options = [ln.split(". ", 1)[1] for ln in listing.splitlines() if ln[:1].isdigit()]
        return {"scores": [9 if "born in" in o else 1 for o in options]}

    llm = ScriptedChatModel(default=qa_responder(prune=score_options))
    reasoner = ThinkOnGraphReasoner(g.store, LLMScorer(llm), width=1, depth=1)
    found = reasoner.search("Where was Marie Curie born?", [topic(g, "Marie Curie")])
    assert [r.predicate for r in found.steps[0].relations if r.kept] == ["born in"]
    assert found.paths[0].text() == "Marie Curie born in Warsaw"
    assert llm.calls == 2  # one relation-pruning call and one entity-pruning call


def test_sufficient_at_depth_one_stops(hand_graph: HandGraph) -> None:
    g = hand_graph
    llm = ScriptedChatModel(default=qa_responder(sufficiency={"sufficient": True}))
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder),
                                    sufficiency=LLMSufficiency(llm), depth=3)
    found = reasoner.search("Where was Marie Curie born?", [topic(g, "Marie Curie")])
    assert len(found.steps) == 1 and found.steps[0].sufficient is True
    assert found.sufficient and found.stop_reason == "sufficient at depth 1"
    assert llm.calls == 1
    facts = llm.requests[0].messages[-1]["content"]
    assert "Marie Curie born in Warsaw" in facts


def test_insufficient_goes_deeper_until_yes(hand_graph: HandGraph) -> None:
    g = hand_graph
    answers = iter([False, True])
    llm = ScriptedChatModel(default=qa_responder(
        sufficiency=lambda _: {"sufficient": next(answers)}))
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder),
                                    sufficiency=LLMSufficiency(llm), depth=3)
    found = reasoner.search("Which river flows through the city where Marie Curie was born?",
                            [topic(g, "Marie Curie")])
    assert [s.sufficient for s in found.steps] == [False, True]
    assert any(p.text() == "Marie Curie born in Warsaw; Warsaw lies on Vistula"
               for p in found.paths)


def test_heuristic_stop_needs_no_llm(hand_graph: HandGraph) -> None:
    g = hand_graph
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder),
                                    sufficiency=HeuristicSufficiency(), depth=3)
    found = reasoner.search("Marie Curie born Warsaw?", [topic(g, "Marie Curie")])
    assert found.sufficient and len(found.steps) == 1


def test_at_most_entities_per_relation_neighbours_are_followed(hand_graph: HandGraph) -> None:
    g = hand_graph
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), width=10, depth=1,
                                    entities_per_relation=3)
    found = reasoner.search("Who are the members of the Physics Club?",
                            [topic(g, "Physics Club")])
    assert len(found.steps[0].candidates) == 3  # 8 members, 3 followed
    assert len(found.paths) == 3


def test_dead_end_is_recorded(hand_graph: HandGraph) -> None:
    g = hand_graph
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), depth=3)
    found = reasoner.search("What is on Lonely Island?", [topic(g, "Lonely Island")])
    assert found.dead_end and found.paths == []
    assert found.stop_reason == "dead end at depth 1"
    assert found.steps[0].note


def test_paths_bring_their_source_chunks_first(hand_graph: HandGraph) -> None:
    g = hand_graph
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), width=1, depth=1,
                                    chunks=3)
    found = reasoner.search("Where was Marie Curie born?", [topic(g, "Marie Curie")])
    assert found.chunks[0].chunk.id == g.chunk_ids["born"]
    assert found.chunks[0].source == "graph-path"
    mentions = [c for c in found.chunks if c.source == "graph-mention"]
    assert mentions and all("Marie Curie" in c.chunk.text or "Warsaw" in c.chunk.text
                            for c in mentions)
    assert len({c.chunk.id for c in found.chunks}) == len(found.chunks)


def test_trace_is_json_ready(hand_graph: HandGraph) -> None:
    g = hand_graph
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), width=2, depth=2)
    found = reasoner.search("Where was Marie Curie born?", [topic(g, "Marie Curie")])
    trace = json.loads(json.dumps([s.model_dump(mode="json") for s in found.steps]))
    assert trace[0]["frontier"][0]["id"] == entity_id("Marie Curie")
    assert {"predicate", "outgoing", "score", "kept"} <= set(trace[0]["relations"][0])


@pytest.mark.parametrize("member", ["Member F", "Member A"])
def test_neighbours_are_chosen_by_score_never_by_id(hand_graph: HandGraph, member: str
                                                    ) -> None:
    """Of the club's 8 members, 3 are followed: the one the question names is among them,
    although its id sorts last (F) or late (A); the store's id order used to decide."""
    g = hand_graph
    by_id = sorted((f"Member {c}" for c in "ABCDEFGH"), key=entity_id)
    assert by_id.index(member) >= 3  # id order alone would never reach it
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), width=1, depth=1,
                                    entities_per_relation=3)
    found = reasoner.search(f"Is {member} in the Physics Club?", [topic(g, "Physics Club")])
    assert member in {c.entity for c in found.steps[0].candidates}
    assert found.paths[0].triples[-1].object == member


def test_pagerank_ranks_candidates_and_adds_passage_hops(hand_graph: HandGraph) -> None:
    """With the question's PageRank, an entity with no fact edge is still reached through
    a passage that names both (ToG-2's entity -> document -> entity hop), and the passage
    is read into the context at that depth."""
    from retrieval.graph_snapshot import GraphSnapshot
    from retrieval.passages import PassageSearch
    from retrieval.ppr import PageRank

    g = hand_graph
    names = {entity_id(n): n for n in ("Marie Curie", "Pierre Curie", "Henri Becquerel",
                                       "Nobel Prize in Physics")}
    nobel = g.chunk_ids["nobel"]
    snap = GraphSnapshot.build(names, [nobel], [(eid, nobel, 1) for eid in names])
    scores = np.zeros(snap.n_entities + snap.n_passages)
    scores[snap.entity_row[entity_id("Henri Becquerel")]] = 0.5  # the walk favours him
    scores[snap.n_entities] = 0.3
    rank = PageRank(snap, scores, PassageSearch("ppr"))
    reasoner = ThinkOnGraphReasoner(g.store, EmbeddingScorer(g.embedder), width=2, depth=1,
                                    entities_per_relation=1)
    found = reasoner.search("Who shared the Nobel Prize in Physics with Marie Curie?",
                            [topic(g, "Marie Curie")], rank=rank)
    hops = [c for c in found.steps[0].candidates if "is mentioned with" in c.text]
    assert hops and hops[0].entity == "Henri Becquerel"  # best PageRank among the hops
    assert any(p.triples[-1].predicate == "is mentioned with" for p in found.paths)
    assert nobel in {c.chunk.id for c in found.chunks}
