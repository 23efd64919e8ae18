"""The GraphStore contract, one suite for every backend.

`GraphStoreContract` holds the tests; `TestGraphStoreContract` runs them on FalkorDB
(native client) and on a real Neo4j 5 (the session's embedded Neo4j Community from
infra/neo4j, or the server KGRAG_NEO4J_URI names). test_bolt_smoke.py runs the same class
over FalkorDB's Bolt listener.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from core.errors import QueryError, ReadOnlyViolation
from core.models import Chunk, Document, Entity, Mention, Proposition, Relation, entity_id
from core.protocols import GraphStore
from kg.store import FalkorGraphStore, FalkorServerStatus, Neo4jGraphStore
from kg.store.base import DEFAULT_BATCH_SIZE, CypherGraphStore
from tests.neo4j_server import Neo4jServer

HOSTILE = "O'Brien \"quoted\" '}) DETACH DELETE n // \\ back\\slash \\' \n$x {y} `z` Ünï 𝄞"


@dataclass
class Corpus:
    docs: list[Document]
    chunks: list[Chunk]
    entities: list[Entity]
    mentions: list[Mention]
    relations: list[Relation]
    props: list[Proposition]

    def write(self, store: GraphStore) -> None:
        store.upsert_documents(self.docs)
        store.upsert_chunks(self.chunks)
        store.upsert_entities(self.entities)
        store.upsert_mentions(self.mentions)
        store.upsert_relations(self.relations)
        store.upsert_propositions(self.props)


def _doc(doc_id: str, texts: list[str]) -> tuple[Document, list[Chunk]]:
    doc = Document(id=doc_id, source=f"{doc_id}.txt", title=doc_id.upper(), sha256=f"sha-{doc_id}")
    chunks, start = [], 0
    for pos, text in enumerate(texts):
        chunks.append(
            Chunk(
                id=Chunk.make_id(doc_id, start, text),
                doc_id=doc_id,
                text=text,
                start=start,
                end=start + len(text),
                position=pos,
            )
        )
        start += len(text) + 1
    return doc, chunks


def _entity(name: str, type_: str = "", aliases: tuple[str, ...] = ()) -> Entity:
    return Entity(id=entity_id(name), name=name, type=type_, aliases=aliases)


def corpus() -> Corpus:
    """Two documents: both say Apple was founded by Jobs; only d1 mentions Cupertino."""
    d1, c1 = _doc("d1", ["Apple was founded by Steve Jobs.", "Apple is in Cupertino.", "End."])
    d2, c2 = _doc("d2", ["Steve Jobs founded Apple in 1976.", "He also ran Pixar."])
    apple = _entity("Apple Inc.", "ORG", ("Apple", "AAPL"))
    jobs = _entity("Steve Jobs", "PERSON")
    cupertino = _entity("Cupertino", "PLACE")
    pixar = _entity("Pixar", "ORG")
    mentions = [
        Mention(entity_id=apple.id, chunk_id=c1[0].id),
        Mention(entity_id=jobs.id, chunk_id=c1[0].id),
        Mention(entity_id=apple.id, chunk_id=c1[1].id),
        Mention(entity_id=cupertino.id, chunk_id=c1[1].id),
        Mention(entity_id=apple.id, chunk_id=c2[0].id),
        Mention(entity_id=jobs.id, chunk_id=c2[0].id),
        Mention(entity_id=jobs.id, chunk_id=c2[1].id),
        Mention(entity_id=pixar.id, chunk_id=c2[1].id),
    ]
    relations = [
        Relation(subject_id=apple.id, predicate="founded by", object_id=jobs.id,
                 chunk_id=c1[0].id, doc_id="d1", confidence=0.9, judge_score=0.8),
        Relation(subject_id=apple.id, predicate="located in", object_id=cupertino.id,
                 chunk_id=c1[1].id, doc_id="d1", confidence=0.7),
        Relation(subject_id=apple.id, predicate="founded by", object_id=jobs.id,
                 chunk_id=c2[0].id, doc_id="d2", confidence=0.95),
        Relation(subject_id=jobs.id, predicate="ran", object_id=pixar.id,
                 chunk_id=c2[1].id, doc_id="d2", confidence=0.6),
    ]  # fmt: skip
    props = [
        Proposition(id=Proposition.make_id(c1[1].id, "Apple is in Cupertino."),
                    text="Apple is in Cupertino.", chunk_id=c1[1].id, doc_id="d1",
                    entity_ids=(apple.id, cupertino.id)),
        Proposition(id=Proposition.make_id(c2[0].id, "Jobs founded Apple in 1976."),
                    text="Jobs founded Apple in 1976.", chunk_id=c2[0].id, doc_id="d2",
                    entity_ids=(apple.id, jobs.id)),
    ]  # fmt: skip
    return Corpus([d1, d2], c1 + c2, [apple, jobs, cupertino, pixar], mentions, relations, props)


def count(store: GraphStore, query: str) -> int:
    return int(store.read_query(query).rows[0]["n"])


def next_pairs(store: GraphStore, doc_id: str) -> list[tuple[int, int]]:
    rows = store.read_query(
        "MATCH (a:Chunk {doc_id: $d})-[:NEXT]->(b:Chunk) "
        "RETURN a.position AS a, b.position AS b ORDER BY a",
        {"d": doc_id},
    ).rows
    return [(r["a"], r["b"]) for r in rows]


class GraphStoreContract:
    """What every GraphStore must do; subclasses provide the `store` fixture."""

    def test_is_a_graph_store_with_rerunnable_schema(self, store: CypherGraphStore) -> None:
        assert isinstance(store, GraphStore)
        store.ensure_schema()
        store.ensure_schema()
        assert store.ping()

    def test_upserts_are_idempotent(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        first = store.stats()
        data.write(store)
        assert store.stats() == first
        assert first.nodes == {"Document": 2, "Chunk": 5, "Entity": 4, "Proposition": 2}
        assert first.relationships == {
            "PART_OF": 5, "NEXT": 3, "MENTIONED_IN": 8, "SYNONYM": 0, "RELATES": 4, "FROM": 2,
            "ABOUT": 4,
        }  # fmt: skip

    def test_batches_larger_than_one_write(self, store: CypherGraphStore) -> None:
        store.batch_size = 7
        entities = [_entity(f"Entity number {i}") for i in range(30)]
        store.upsert_entities(entities)
        store.upsert_entities(entities)
        assert store.stats().nodes["Entity"] == 30

    def test_next_chain_follows_positions(self, store: GraphStore) -> None:
        _, chunks = _doc("d9", [f"chunk {i}" for i in range(6)])
        store.upsert_chunks([chunks[i] for i in (4, 1, 5)])
        store.upsert_chunks([chunks[i] for i in (0, 3, 2, 1)])
        assert next_pairs(store, "d9") == [(i, i + 1) for i in range(5)]
        assert [c.position for c in store.chunks_of_document("d9")] == list(range(6))

    def test_reads_records_back(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        assert store.document_hashes() == {"d1": "sha-d1", "d2": "sha-d2"}
        wanted = [data.chunks[3].id, "missing", data.chunks[0].id]
        assert store.get_chunks(wanted) == [data.chunks[3], data.chunks[0]]
        apple = data.entities[0]
        assert store.get_entities([apple.id]) == [apple]

    def test_delete_keeps_what_another_document_supports(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        apple, jobs, cupertino, pixar = data.entities
        report = store.delete_documents(["d1"])
        d1_chunks = {c.id for c in data.chunks if c.doc_id == "d1"}
        assert (report.documents, report.chunks, report.relations) == (1, 3, 2)
        assert (report.propositions, report.entities) == (1, 1)
        assert set(report.chunk_ids) == d1_chunks
        # the fact d2 also states survives, with d2's provenance
        founded = store.neighbours(apple.id, "founded by")
        assert [(n.entity.id, n.chunk_id) for n in founded] == [(jobs.id, data.chunks[3].id)]
        # Cupertino was only in d1; Apple and Jobs are still mentioned by d2
        assert store.get_entities([apple.id, jobs.id, cupertino.id, pixar.id]) == [
            apple, jobs, pixar,
        ]  # fmt: skip
        assert store.get_chunks(sorted(d1_chunks)) == []
        assert store.document_hashes() == {"d2": "sha-d2"}
        assert next_pairs(store, "d2") == [(0, 1)]
        assert store.stats().nodes == {"Document": 1, "Chunk": 2, "Entity": 3, "Proposition": 1}
        assert store.delete_documents(["d1"]).documents == 0

    def test_delete_chunks_removes_what_only_they_supported(self, store: GraphStore) -> None:
        """An old version's chunks go once the new version is written: their facts,
        propositions and the entities only they held; the document stays, NEXT relinked."""
        data = corpus()
        data.write(store)
        apple, _, cupertino, _ = data.entities
        middle = data.chunks[1]  # d1's "Apple is in Cupertino." with its fact and proposition
        report = store.delete_chunks([middle.id, "missing"])
        assert (report.documents, report.chunks, report.relations) == (0, 1, 1)
        assert (report.propositions, report.entities) == (1, 1)
        assert report.entity_ids == [cupertino.id] and report.chunk_ids == [middle.id, "missing"]
        assert store.get_entities([apple.id, cupertino.id]) == [apple]
        assert store.neighbours(apple.id, "located in") == []
        assert [c.position for c in store.chunks_of_document("d1")] == [0, 2]
        assert next_pairs(store, "d1") == [(0, 2)]
        assert store.document_hashes() == {"d1": "sha-d1", "d2": "sha-d2"}
        assert store.delete_chunks([]).chunks == 0

    def test_document_states_show_placeholders_and_chunks_to_retry(
            self, store: GraphStore) -> None:
        data = corpus()
        store.upsert_chunks(data.chunks)  # a killed run: chunks, no document marked done
        states = store.document_states()
        assert {d: s.sha256 for d, s in states.items()} == {"d1": "", "d2": ""}
        assert store.document_hashes() == {}
        store.upsert_documents(data.docs, {"d2": [data.chunks[4].id]})
        states = store.document_states()
        assert states["d1"].sha256 == "sha-d1" and states["d1"].retry_chunks == ()
        assert states["d2"].retry_chunks == (data.chunks[4].id,)
        store.upsert_documents(data.docs[1:])
        assert store.document_states()["d2"].retry_chunks == ()

    def test_relation_candidates_and_neighbours(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        apple, jobs, cupertino, _ = data.entities
        assert store.relation_candidates(apple.id) == [
            ("founded by", True, 1), ("located in", True, 1),
        ]  # fmt: skip
        assert sorted(store.relation_candidates(jobs.id)) == [
            ("founded by", False, 1), ("ran", True, 1),
        ]  # fmt: skip
        around_jobs = store.neighbours(jobs.id)
        assert [(n.entity.name, n.predicate, n.outgoing) for n in around_jobs] == [
            ("Apple Inc.", "founded by", False), ("Pixar", "ran", True),
        ]  # fmt: skip
        assert around_jobs[0].confidence == pytest.approx(0.95)  # best of the two chunks
        assert [n.entity.id for n in store.neighbours(apple.id, "located in")] == [cupertino.id]
        assert len(store.neighbours(apple.id, limit=1)) == 1
        assert store.neighbours("no-such-entity") == []

    def test_find_entities_ignores_case_and_matches_aliases(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        store.upsert_entities([_entity("Straße Köln")])
        assert [e.name for e in store.find_entities("STEVE")] == ["Steve Jobs"]
        assert [e.name for e in store.find_entities("aapl")] == ["Apple Inc."]
        assert [e.name for e in store.find_entities("STRASSE")] == ["Straße Köln"]
        assert [e.name for e in store.find_entities("köln")] == ["Straße Köln"]
        assert len(store.find_entities("e", limit=2)) == 2
        assert store.find_entities("nothing like it") == []

    def test_chunks_mentioning(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        apple, jobs, _, _ = data.entities
        both = store.chunks_mentioning([apple.id, jobs.id], limit=10)
        assert {c.id for c in both[:2]} == {data.chunks[0].id, data.chunks[3].id}
        assert len(both) == 4
        assert len(store.chunks_mentioning([apple.id], limit=1)) == 1

    def test_read_query_returns_columns_and_json_rows(self, store: GraphStore) -> None:
        data = corpus()
        data.write(store)
        result = store.read_query(
            "MATCH p = (a:Entity {name: $name})-[r:RELATES]->(b:Entity) "
            "RETURN b.name AS name, r, a, p ORDER BY r.confidence DESC LIMIT 1",
            {"name": "Apple Inc."},
        )
        assert result.columns == ["name", "r", "a", "p"]
        row = result.rows[0]
        assert row["name"] == "Steve Jobs"
        assert row["r"]["_type"] == "RELATES" and row["r"]["predicate"] == "founded by"
        assert row["a"]["_labels"] == ["Entity"] and row["a"]["aliases"] == ["Apple", "AAPL"]
        assert [item.get("name", item.get("_type")) for item in row["p"]] == [
            "Apple Inc.", "RELATES", "Steve Jobs",
        ]  # fmt: skip
        assert not result.truncated
        assert result.to_json() == {"columns": result.columns, "rows": result.rows}

    def test_console_refuses_writes_and_changes_nothing(self, store: GraphStore) -> None:
        corpus().write(store)
        before = store.stats()
        for query in (
            "MATCH (n) DETACH DELETE n",
            "CREATE (:Entity {id: 'x'})",
            "MATCH (e:Entity) SET e.name = 'x'",
            "MERGE (n:Document {id: 'x'})",
            "MATCH (e:Entity) REMOVE e.name",
            "CALL db.idx.fulltext.createNodeIndex('Entity', 'name')",
        ):
            with pytest.raises(ReadOnlyViolation, match="read-only"):
                store.read_query(query)
        assert store.stats() == before

    def test_engine_refuses_writes_without_the_keyword_scan(self, store: CypherGraphStore) -> None:
        corpus().write(store)
        before = store.stats()
        with pytest.raises(ReadOnlyViolation):
            store._run_read_only("CREATE (:Entity {id: 'sneaky'})", {}, 10, 5.0)
        assert store.stats() == before

    def test_bad_cypher_is_a_query_error(self, store: GraphStore) -> None:
        with pytest.raises(QueryError):
            store.read_query("MATCH (n RETURN n")

    def test_hostile_strings_are_stored_verbatim(self, store: GraphStore) -> None:
        corpus().write(store)
        before = store.stats()
        doc, (chunk,) = _doc("evil", [HOSTILE])
        villain = Entity(id=entity_id(HOSTILE), name=HOSTILE, type="'})//", description=HOSTILE,
                         aliases=(HOSTILE, "it's"))  # fmt: skip
        other = _entity("Other")
        store.upsert_documents([doc.model_copy(update={"title": HOSTILE})])
        store.upsert_chunks([chunk])
        store.upsert_entities([villain, other])
        store.upsert_mentions([Mention(entity_id=villain.id, chunk_id=chunk.id)])
        evil_fact = Relation(subject_id=villain.id, predicate=HOSTILE, object_id=other.id,
                             chunk_id=chunk.id, doc_id="evil")  # fmt: skip
        store.upsert_relations([evil_fact])
        assert store.get_chunks([chunk.id]) == [chunk]
        assert store.get_entities([villain.id]) == [villain]
        assert store.find_entities("o'brien") == [villain]
        assert [n.predicate for n in store.neighbours(villain.id)] == [HOSTILE]
        echoed = store.read_query("RETURN $s AS s", {"s": HOSTILE}).rows
        assert echoed == [{"s": HOSTILE}]
        after = store.stats()
        assert after.nodes["Document"] == before.nodes["Document"] + 1
        assert after.nodes["Entity"] == before.nodes["Entity"] + 2

    def test_row_limit_truncates(self, store: CypherGraphStore) -> None:
        store.upsert_entities([_entity(f"E{i}") for i in range(25)])
        query = "MATCH (e:Entity) RETURN e.name AS name"
        cut = store.read_query(query, limit=10)
        assert len(cut.rows) == 10 and cut.truncated
        whole = store.read_query(query, limit=25)
        assert len(whole.rows) == 25 and not whole.truncated
        store.row_limit = 5
        assert len(store.read_query(query).rows) == 5

    def test_slow_query_times_out(self, store: GraphStore) -> None:
        with pytest.raises(QueryError, match="longer than"):
            store.read_query(
                "UNWIND range(1, 20000000) AS x WITH x WHERE x % 7 = 0 RETURN count(x) AS n",
                timeout_s=0.05,
            )

    def test_clear_empties_the_graph(self, store: GraphStore) -> None:
        corpus().write(store)
        store.clear()
        stats = store.stats()
        assert set(stats.nodes.values()) == {0} and set(stats.relationships.values()) == {0}
        corpus().write(store)  # still usable after clearing
        assert store.stats().nodes["Document"] == 2


@pytest.fixture(scope="module")
def neo4j_store(neo4j_server: Neo4jServer) -> Iterator[Neo4jGraphStore]:
    store = Neo4jGraphStore(
        neo4j_server.uri, neo4j_server.user, neo4j_server.password, neo4j_server.database
    )
    store.ensure_schema()
    try:
        yield store
    finally:
        store.clear()
        store.close()


@pytest.fixture(
    params=[
        pytest.param("falkor", marks=pytest.mark.services),
        pytest.param("neo4j", marks=[pytest.mark.services, pytest.mark.neo4j]),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[CypherGraphStore]:
    if request.param == "falkor":
        falkor: FalkorGraphStore = request.getfixturevalue("falkor_store")
        yield falkor
        return
    neo: Neo4jGraphStore = request.getfixturevalue("neo4j_store")
    neo.clear()
    neo.row_limit, neo.batch_size = 1000, DEFAULT_BATCH_SIZE
    yield neo
    neo.clear()


class TestGraphStoreContract(GraphStoreContract):
    pass


@pytest.mark.services
def test_falkor_graph_never_written_reads_as_empty(falkor_server: FalkorServerStatus) -> None:
    assert falkor_server.port is not None
    store = FalkorGraphStore(falkor_server.host, falkor_server.port, graph_name="never_written")
    try:
        assert store.get_entities(["e"]) == [] and store.document_hashes() == {}
        assert store.read_query("RETURN 1 AS one").rows == [{"one": 1}]
    finally:
        store.clear()
        store.close()
