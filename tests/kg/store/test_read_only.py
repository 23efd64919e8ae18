"""The console's keyword scan: writes are refused, reads (even odd-looking ones) are not."""

from __future__ import annotations

import pytest

from core.errors import ReadOnlyViolation
from kg.store.read_only import ensure_read_only, find_write_clause


@pytest.mark.parametrize(
    ("query", "clause"),
    [
        ("MATCH (n) DETACH DELETE n", "DETACH"),
        ("match (n) delete n", "DELETE"),
        ("CREATE (:X)", "CREATE"),
        ("MERGE (n:X {id: 1})", "MERGE"),
        ("MATCH (n) SET n.x = 1", "SET"),
        ("MATCH (n) REMOVE n:Label", "REMOVE"),
        ("DROP INDEX ON :X(id)", "DROP"),
        ("MATCH (n) FOREACH (x IN [1] | SET n.y = x)", "FOREACH"),
        ("LOAD  CSV FROM 'file:///etc/passwd' AS row RETURN row", "LOAD CSV"),
        ("CALL db.idx.fulltext.createNodeIndex('E', 'n')", "CALL db.idx.fulltext.createNodeIndex"),
        ("CALL db.create.setNodeVectorProperty(n,'v',x)", "CALL db.create.setNodeVectorProperty"),
        ("CALL apoc.periodic.iterate('a', 'b', {})", "CALL apoc.periodic.iterate"),
        ("CALL dbms.security.createUser('x', 'y')", "CALL dbms.security.createUser"),
        ("RETURN 'x' AS s CREATE (n)", "CREATE"),
        ("RETURN 'it\\'s' AS s, 1 AS n MERGE (m)", "MERGE"),
        ("MATCH (n) CALL { WITH n SET n.x = 1 } RETURN n", "SET"),
    ],
)
def test_writes_are_found(query: str, clause: str) -> None:
    assert find_write_clause(query) == clause
    with pytest.raises(ReadOnlyViolation, match="read-only"):
        ensure_read_only(query)


@pytest.mark.parametrize(
    "query",
    [
        "MATCH (n:Entity) RETURN n.name AS set_name LIMIT 5",
        "RETURN 'CREATE (n) DETACH DELETE n' AS text",
        'RETURN "MERGE \\" SET" AS text',
        "MATCH (n:Create) RETURN n.set, n.delete, $merge",
        "RETURN {set: 1, remove: 2} AS m",
        "MATCH (`CREATE`) RETURN 1",
        "RETURN 1 // CREATE (n)",
        "RETURN 1 /* DELETE n */",
        "CALL db.labels()",
        "CALL db.indexes()",
        "MATCH p = shortestPath((a)-[*..3]-(b)) RETURN p",
        "MATCH (n) WHERE n.name STARTS WITH 'Set' RETURN n",
    ],
)
def test_reads_pass(query: str) -> None:
    assert find_write_clause(query) is None
    ensure_read_only(query)
