"""Topic-entity linking against the hand-built graph (names via Cypher, vectors via FAISS)."""

from __future__ import annotations

import pytest

from core.models import entity_id
from retrieval.linking import EntityLinker, question_spans, span_parts
from tests.retrieval.conftest import HandGraph


def test_spans_are_names_without_question_words() -> None:
    assert question_spans("Did Marie Curie win the Nobel Prize in Physics?") == [
        "Marie Curie", "Nobel Prize in Physics"]
    assert question_spans('Who wrote "the little prince"?') == ["the little prince"]
    assert question_spans("who discovered radium?") == ["discovered", "radium"]
    assert span_parts("1903 Nobel Prize in Physics") == [
        "Nobel Prize in Physics", "Nobel Prize", "Physics"]


@pytest.mark.services
def test_links_named_entities_with_scores(hand_graph: HandGraph) -> None:
    g = hand_graph
    linker = EntityLinker(g.store, g.entity_index, g.embedder, threshold=0.6)
    found = linker.link("Did Marie Curie and Henri Becquerel both win a prize?")
    assert [e.entity.name for e in found][:2] == ["Henri Becquerel", "Marie Curie"]
    assert all(e.score == 1.0 and e.via == "name" for e in found[:2])


@pytest.mark.services
def test_fuzzy_and_vector_matches_above_the_threshold_only(hand_graph: HandGraph) -> None:
    g = hand_graph
    linker = EntityLinker(g.store, g.entity_index, g.embedder, threshold=0.6)
    # A misspelt name is not a substring of any name: the entity index finds it.
    found = linker.link("Where was Marie Curi born?")
    assert found and found[0].entity.id == entity_id("Marie Curie")
    assert 0.6 <= found[0].score < 1.0
    # Nothing in the graph resembles this.
    assert linker.link("What is the airspeed velocity of an unladen swallow?") == []
    strict = EntityLinker(g.store, g.entity_index, g.embedder, threshold=0.99)
    assert strict.link("Where was Marie Curi born?") == []


@pytest.mark.services
def test_a_span_with_extra_words_links_through_its_parts(hand_graph: HandGraph) -> None:
    g = hand_graph
    linker = EntityLinker(g.store, None, None, threshold=0.8)  # names only
    found = linker.link("Who won the 1903 Nobel Prize in Physics?")
    assert [e.entity.name for e in found] == ["Nobel Prize in Physics"]
    assert found[0].span == "Nobel Prize in Physics"


@pytest.mark.services
def test_at_most_max_entities(hand_graph: HandGraph) -> None:
    g = hand_graph
    linker = EntityLinker(g.store, g.entity_index, g.embedder, max_entities=2)
    found = linker.link("Marie Curie, Pierre Curie, Henri Becquerel and Warsaw")
    assert len(found) == 2
