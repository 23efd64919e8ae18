"""End-to-end tests against real servers: kgrag as a user runs it, on Neo4j."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kg.store import Neo4jGraphStore
from tests.conftest import LOCAL_MODEL
from tests.neo4j_server import Neo4jServer


@pytest.fixture
def neo4j_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
              neo4j_server: Neo4jServer) -> Iterator[Path]:
    """A kgrag user's environment with KGRAG_GRAPH_BACKEND=neo4j on the session's Neo4j,
    whose one database starts empty. Returns the data dir."""
    data = tmp_path / "kgrag-data"
    monkeypatch.setenv("KGRAG_DATA_DIR", str(data))
    for key, value in neo4j_server.settings_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KGRAG_GRAPH_NAME", f"t_{uuid.uuid4().hex[:10]}")  # unused by Neo4j
    monkeypatch.setenv("KGRAG_EMBED_DEVICE", "cpu")
    if LOCAL_MODEL.exists():
        monkeypatch.setenv("KGRAG_LLM_MODEL_PATH", str(LOCAL_MODEL))
    from core.settings import get_settings

    get_settings.cache_clear()
    with Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password,
                         neo4j_server.database) as store:
        store.clear()
    yield data
    get_settings.cache_clear()
