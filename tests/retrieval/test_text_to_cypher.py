"""Text-to-Cypher: the schema the model sees, what is cut from its reply, what is refused
(scripted fake model; a real graph where the schema is read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import QueryError
from core.llm.testing import ScriptedChatModel
from core.protocols import GraphStats, QueryResult
from kg.store.read_only import ensure_read_only
from retrieval.text_to_cypher import (
    CypherQueryWriter,
    GraphSchema,
    extract_cypher,
    graph_schema,
    unknown_names,
)

SCHEMA = GraphSchema(
    "Node labels (count): properties\n  Document (3): id, title",
    frozenset({"Document", "Chunk", "Entity"}),
    frozenset({"PART_OF", "MENTIONED_IN", "RELATES"}),
    frozenset({"id", "title", "name", "type", "predicate", "count", "text"}),
)


class FakeGraphStore:
    """A stand-in store (named as such): refuses writes like the real read-only path,
    answers `rows` to any other query, and a syntax error to one starting `MATC `."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[str] = []

    def stats(self) -> GraphStats:
        return GraphStats(nodes={"Document": 3}, relationships={"PART_OF": 3})

    def find_entities(self, name: str, limit: int = 10) -> list[Any]:
        return []

    def read_query(self, cypher: str, params: dict[str, Any] | None = None,
                   limit: int | None = None, timeout_s: float | None = None) -> QueryResult:
        ensure_read_only(cypher)
        self.queries.append(cypher)
        if cypher.startswith("MATC "):
            raise QueryError("Cypher error: Invalid input 'MATC'")
        return QueryResult(["n"], self.rows[: limit or None])


def writer(replies: list[str], rows: list[dict[str, Any]] | None = None
           ) -> tuple[CypherQueryWriter, ScriptedChatModel, FakeGraphStore]:
    fake_llm = ScriptedChatModel(replies)
    store = FakeGraphStore([{"n": 3}] if rows is None else rows)
    return CypherQueryWriter(fake_llm, store, schema=SCHEMA), fake_llm, store  # type: ignore[arg-type]


def test_one_statement_is_cut_from_a_chatty_reply() -> None:
    reply = ("Here is the query:\n```cypher\nMATCH (d:Document)\nRETURN count(d) AS n;\n```\n"
             "It counts the documents.")
    assert extract_cypher(reply) == "MATCH (d:Document)\nRETURN count(d) AS n"
    assert extract_cypher("MATCH (n) RETURN n\n\nMATCH (m) RETURN m") == "MATCH (n) RETURN n"
    assert extract_cypher("no query here") == "no query here"


def test_names_the_graph_lacks_are_caught_before_running() -> None:
    slip = "MATCH (p:Person)-[:MARRIED]->(o:Entity) RETURN o.fullname AS x"
    hint = unknown_names(slip, SCHEMA)
    assert hint is not None
    assert "Person" in hint and "MARRIED" in hint and "fullname" in hint
    assert "r.predicate" in hint  # says how a fact is written
    fine = ("MATCH (s:Entity)-[r:RELATES]->(o:Entity) WHERE toLower(s.name) = 'x' "
            "RETURN o.name AS y, size(o.name) AS n")
    assert unknown_names(fine, SCHEMA) is None


def test_a_query_that_runs_is_returned_after_one_call() -> None:
    w, fake_llm, _ = writer(["MATCH (d:Document) RETURN count(d) AS n"])
    draft = w.write("How many documents are there?")
    assert draft.ok and draft.attempts == 1 and not draft.refused
    assert draft.query == "MATCH (d:Document) RETURN count(d) AS n"
    prompt = fake_llm.requests[0].messages
    assert "Document (3): id, title" in prompt[0]["content"]  # the schema is in the prompt
    assert prompt[-1]["content"].startswith("Question: How many documents are there?")


def test_a_syntax_error_goes_back_to_the_model_once() -> None:
    w, fake_llm, _ = writer(["MATC (d:Document) RETURN d", "MATCH (d:Document) RETURN d.title"])
    draft = w.write("List the documents.")
    assert draft.ok and draft.attempts == 2
    retry = fake_llm.requests[1].messages[-1]["content"]
    assert "Invalid input 'MATC'" in retry


def test_a_write_is_refused_and_never_reaches_the_engine() -> None:
    w, _, store = writer(["MATCH (d:Document) DETACH DELETE d", "MATCH (d) SET d.x = 1"])
    draft = w.write("Delete all documents.")
    assert draft.refused and not draft.ok and draft.attempts == 2
    assert "read-only" in (draft.error or "")
    assert store.queries == []


def test_an_empty_result_is_retried_and_then_kept() -> None:
    w, fake_llm, _ = writer(["MATCH (d:Document) RETURN d.title AS t"] * 2, rows=[])
    draft = w.write("Which documents mention Atlantis?")
    assert draft.ok and draft.empty and draft.attempts == 2
    assert "no rows" in fake_llm.requests[1].messages[-1]["content"]


@pytest.mark.services
def test_schema_text_shows_labels_predicates_and_names(kgrag_env: Path, tmp_path: Path,
                                                       scripted_llm: object) -> None:
    from flows.components import Components
    from flows.ingest import ingest_corpus
    from tests.corpus import write_corpus

    ingest_corpus([str(write_corpus(tmp_path / "corpus"))], extract=True)
    c = Components.from_settings()
    try:
        schema = graph_schema(c.graph)
    finally:
        c.close()
    text = schema.text
    assert "Document (3):" in text and "title" in text
    assert "(:Entity)-[:RELATES {predicate" in text
    assert "'related to'" in text  # the scripted extractor's one predicate
    assert "'Marie Curie'" in text and "'danube'" in text.casefold()
    assert "search" not in text.split("Entity (")[1].split("\n")[0]  # bookkeeping hidden
    assert {"Document", "Entity"} <= schema.labels and "RELATES" in schema.relationship_types
