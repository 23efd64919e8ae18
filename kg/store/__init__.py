"""Graph store backends: FalkorDB (embedded by default) and Neo4j, one Cypher for both.

    >>> store = make_graph_store(get_settings())   # doctest: +SKIP
    >>> store.stats().nodes                        # doctest: +SKIP
    {'Document': 3, 'Chunk': 41, 'Entity': 120, 'Proposition': 88}
"""

from __future__ import annotations

from core.protocols import GraphStore
from core.settings import Settings
from kg.store.base import CypherGraphStore
from kg.store.falkor import FalkorGraphStore
from kg.store.falkor_server import EmbeddedFalkorServer, FalkorServerStatus, ensure_running
from kg.store.neo4j import Neo4jGraphStore
from kg.store.read_only import ensure_read_only

__all__ = [
    "CypherGraphStore",
    "EmbeddedFalkorServer",
    "FalkorGraphStore",
    "FalkorServerStatus",
    "Neo4jGraphStore",
    "ensure_read_only",
    "ensure_running",
    "make_graph_store",
]


def make_graph_store(settings: Settings) -> GraphStore:
    """The configured graph store, connected and with its schema in place.

    falkor: starts the embedded FalkorDB server unless `falkor_external`, then connects;
    neo4j: connects to `neo4j_uri`. Unreachable servers raise `ServiceError` naming the
    address and the fix.
    """
    store: CypherGraphStore
    if settings.graph_backend == "neo4j":
        store = Neo4jGraphStore.from_settings(settings)
    else:
        host, port = ensure_running(settings)
        store = FalkorGraphStore.from_settings(settings, host, port)
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store
