"""What kgrag adds on Neo4j itself, on the session's real Neo4j 5 (see tests/neo4j_server.py):
constraints and indexes, entity lookup through the full-text index, `kgrag doctor` on Neo4j,
and the embedded server's data and password surviving a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.doctor import check_graph
from core.errors import QueryError, ServiceError
from core.models import Entity, entity_id
from kg.store import Neo4jGraphStore
from kg.store.base import CypherGraphStore
from kg.store.neo4j import lucene_contains
from tests import neo4j_server as embedded
from tests.kg.store.conftest import isolated_settings
from tests.neo4j_server import Neo4jServer


@pytest.mark.parametrize(
    ("q", "lucene"),
    [
        ("jobs", "*jobs*"),
        ("steve jobs", "*steve AND jobs*"),
        ("ve j", "*ve AND j*"),
        ("a b c d", "*a AND b AND c AND d*"),
        ("c++ (lang)", "*c\\+\\+ AND \\(lang\\)*"),
        ('at&t: "x"*?', '*at\\&t\\: AND \\"x\\"\\*\\?*'),
        ("o'brien back\\slash", "*o'brien AND back\\\\slash*"),
    ],
)
def test_lucene_query_asks_for_every_key_containing_q(q: str, lucene: str) -> None:
    assert lucene_contains(q) == lucene


def test_lucene_query_gives_way_to_the_scan_where_the_index_cannot_answer() -> None:
    assert lucene_contains("") is None
    assert lucene_contains("x" * 256) is None  # the tokenizer would have cut this word
    assert lucene_contains("\U0001d11e" * 128) is None  # 256 UTF-16 units
    assert lucene_contains("x" * 255) == "*" + "x" * 255 + "*"


@pytest.fixture
def store(neo4j_server: Neo4jServer) -> Iterator[Neo4jGraphStore]:
    neo = Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password,
                          neo4j_server.database)
    neo.ensure_schema()
    neo.clear()
    try:
        yield neo
    finally:
        neo.clear()
        neo.close()


def names(found: list[Entity]) -> list[str]:
    return [e.name for e in found]


@pytest.mark.services
@pytest.mark.neo4j
def test_schema_has_unique_ids_and_the_entity_full_text_index(store: Neo4jGraphStore) -> None:
    assert not store.over_falkordb and store.supports_constraints
    constraints = store.read_query(
        "SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type "
        "WHERE type = 'UNIQUENESS' RETURN labelsOrTypes[0] AS label, properties AS props"
    ).rows
    assert {(r["label"], tuple(r["props"])) for r in constraints} >= {
        (label, ("id",)) for label in ("Document", "Chunk", "Entity", "Proposition")
    }
    indexes = {r["name"]: r for r in store.read_query(
        "SHOW INDEXES YIELD name, type, state, properties RETURN name, type, state, properties"
    ).rows}
    assert indexes["entity_search"]["type"] == "FULLTEXT"
    assert indexes["entity_search"]["properties"] == ["search"]
    assert indexes["relates_doc_id"]["type"] == "RANGE"
    assert {r["state"] for r in indexes.values()} == {"ONLINE"}


@pytest.mark.services
@pytest.mark.neo4j
def test_the_database_refuses_a_second_node_with_the_same_id(store: Neo4jGraphStore) -> None:
    store.upsert_entities([Entity(id="e1", name="One")])
    with pytest.raises(QueryError, match="ConstraintValidationFailed"):
        store._write("CREATE (:Entity {id: 'e1', name: 'copy'})", {})
    assert store.stats().nodes["Entity"] == 1


@pytest.mark.services
@pytest.mark.neo4j
def test_full_text_lookup_finds_what_the_scan_finds(store: Neo4jGraphStore) -> None:
    people = ["Steve Jobs", "Steven Spielberg", "C++ (language)", "AT&T Inc.", "O'Brien",
              "Jobs Steve", "x" * 300]
    store.upsert_entities([Entity(id=entity_id(n), name=n) for n in people])
    for q in ["steve", "STEVE JOBS", "ve jo", "ven spiel", "c++ (lang", "&t in", "o'bri",
              "jobs steve", "s", "x" * 290, "nobody"]:
        # through the index, and through the shared label scan
        assert names(store.find_entities(q)) == names(CypherGraphStore.find_entities(store, q))
    assert names(store.find_entities("steve")) == ["Steve Jobs", "Steven Spielberg",
                                                   "Jobs Steve"]
    assert names(store.find_entities("ve jo")) == ["Steve Jobs"]  # order of words counts
    assert names(store.find_entities("x" * 290)) == ["x" * 300]  # over-long: scan


@pytest.mark.services
@pytest.mark.neo4j
def test_lookup_needs_the_full_text_index_and_ensure_schema_restores_it(
        store: Neo4jGraphStore) -> None:
    store.upsert_entities([Entity(id="e1", name="Marie Curie")])
    store._write("DROP INDEX entity_search", {})
    with pytest.raises(QueryError, match="entity_search"):
        store.find_entities("curie")
    store.ensure_schema()  # recreated, filled from the existing entities, waited for
    assert names(store.find_entities("CURIE")) == ["Marie Curie"]


@pytest.mark.services
@pytest.mark.neo4j
def test_embedded_server_keeps_data_and_password_across_restarts(tmp_path: Path) -> None:
    """A second server on its own folder: started, written, stopped, started again."""
    if embedded.external_server() is not None:
        pytest.skip("KGRAG_NEO4J_URI names an external server; this tests the embedded one")
    home = tmp_path / "neo4j"
    first = embedded.start(home)
    try:
        with Neo4jGraphStore(first.uri, first.user, first.password) as neo:
            neo.upsert_entities([Entity(id="kept", name="Kept across restarts")])
    finally:
        embedded.stop(home)
    assert not (home / "server.pid").exists()
    second = embedded.start(home)
    try:
        assert second.password == first.password and len(second.password) >= 32
        with Neo4jGraphStore(second.uri, second.user, second.password) as neo:
            assert names(neo.get_entities(["kept"])) == ["Kept across restarts"]
        with pytest.raises(ServiceError, match="credentials"):
            Neo4jGraphStore(second.uri, "neo4j", "wrong password")
    finally:
        embedded.stop(home)


@pytest.mark.services
@pytest.mark.neo4j
def test_doctor_names_the_neo4j_server_and_the_index_state(
        neo4j_server: Neo4jServer, tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, graph_backend="neo4j", neo4j_uri=neo4j_server.uri,
                                 neo4j_user=neo4j_server.user,
                                 neo4j_password=neo4j_server.password)
    check = check_graph(settings)
    assert check.ok, check
    assert "Neo4j Kernel 5." in check.detail and "community" in check.detail
    assert "entity full-text index online" in check.detail


def test_doctor_says_how_to_point_kgrag_at_neo4j(tmp_path: Path) -> None:
    check = check_graph(isolated_settings(tmp_path, graph_backend="neo4j"))
    assert not check.ok and "KGRAG_NEO4J_URI is unset" in check.detail
    assert "KGRAG_NEO4J_PASSWORD" in check.hint and "infra/neo4j/server.sh" in check.hint
