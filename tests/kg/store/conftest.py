"""One real embedded FalkorDB server for the whole store suite; a fresh graph per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from kg.store import EmbeddedFalkorServer, FalkorGraphStore, FalkorServerStatus


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings that read neither the environment's KGRAG_FALKOR_* nor a kgrag.toml."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KGRAG_CONFIG", str(data_dir / "no-such-kgrag.toml"))
        for key in ("KGRAG_FALKOR_PORT", "KGRAG_FALKOR_EXTERNAL", "KGRAG_FALKOR_HOST"):
            mp.delenv(key, raising=False)
        return load_settings(data_dir=data_dir, **overrides)


@pytest.fixture(scope="session")
def falkor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FalkorServerStatus]:
    """The session's FalkorDB server (stopped, data and all, when the session ends)."""
    settings = isolated_settings(tmp_path_factory.mktemp("falkor-session"))
    server = EmbeddedFalkorServer(settings)
    status = server.start()
    try:
        yield status
    finally:
        server.stop()


@pytest.fixture
def falkor_store(falkor_server: FalkorServerStatus) -> Iterator[FalkorGraphStore]:
    """A FalkorGraphStore on a graph no other test uses, dropped afterwards."""
    assert falkor_server.port is not None
    store = FalkorGraphStore(
        falkor_server.host, falkor_server.port, graph_name=f"test_{uuid.uuid4().hex[:12]}"
    )
    store.ensure_schema()
    try:
        yield store
    finally:
        store._graph.delete()
        store.close()
