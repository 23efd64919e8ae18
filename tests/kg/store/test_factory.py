"""make_graph_store and the errors a user sees when a graph server is not there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.errors import ServiceError
from kg.store import (
    EmbeddedFalkorServer,
    FalkorGraphStore,
    Neo4jGraphStore,
    ensure_running,
    make_graph_store,
)
from tests.kg.store.conftest import isolated_settings


@pytest.mark.services
def test_factory_starts_the_embedded_server_once(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "kg", graph_name="factory")
    try:
        host, port = ensure_running(settings)
        assert (host, port) == ensure_running(settings)  # second call finds it
        store = make_graph_store(settings)
        assert isinstance(store, FalkorGraphStore)
        assert store.ping() and store.stats().nodes["Entity"] == 0
        store.close()
    finally:
        EmbeddedFalkorServer(settings).stop()


def test_external_falkordb_is_not_started_and_its_absence_is_explained(tmp_path: Path) -> None:
    settings = isolated_settings(
        tmp_path / "kg", falkor_external=True, falkor_host="127.0.0.1", falkor_port=1
    )
    assert ensure_running(settings) == ("127.0.0.1", 1)
    assert not (settings.run_dir / "falkordb.json").exists()
    with pytest.raises(ServiceError, match=r"127\.0\.0\.1:1") as err:
        make_graph_store(settings)
    assert "KGRAG_FALKOR" in err.value.hint


def test_unreachable_neo4j_names_the_uri(tmp_path: Path) -> None:
    settings = isolated_settings(
        tmp_path / "kg", graph_backend="neo4j", neo4j_uri="bolt://127.0.0.1:1"
    )
    began = time.monotonic()
    with pytest.raises(ServiceError, match=r"bolt://127\.0\.0\.1:1") as err:
        make_graph_store(settings)
    assert "KGRAG_NEO4J_URI" in err.value.hint
    assert time.monotonic() - began < 10


def test_neo4j_without_a_uri_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="no Neo4j URI") as err:
        Neo4jGraphStore("")
    assert "KGRAG_NEO4J_URI" in err.value.hint
