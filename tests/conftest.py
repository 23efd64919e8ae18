"""Test-wide set-up: no test reads the developer's kgrag.toml or touches the hub."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.neo4j_server import Neo4jServer, running_neo4j

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's ephemeral API keeps its database here, not in the developer's ~/.prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="kgrag-test-prefect-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The ephemeral API migrates a fresh database at its first start; on a busy CI machine that
# takes longer than Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _models_dir() -> Path:
    """Where `make setup` put the models: $KGRAG_TEST_MODELS_DIR, else the shared models
    folder (KGRAG_MODELS_DIR or ~/.cache/kgrag/models), else an older checkout's
    data/models."""
    from core.settings import default_models_dir

    named = os.environ.get("KGRAG_TEST_MODELS_DIR") or os.environ.get("KGRAG_MODELS_DIR")
    if named:
        return Path(named)
    shared, legacy = default_models_dir(), REPO / "data" / "models"
    return legacy if not (shared / _MODEL_FILE).exists() and (legacy / _MODEL_FILE).exists(
        ) else shared


_MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
#: The local model, assembled once per machine by `make setup` (or the llm test fixture).
LOCAL_MODEL = _models_dir() / _MODEL_FILE


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test sees only the KGRAG_* settings it sets itself."""
    for key in list(os.environ):
        if key.startswith("KGRAG_") and key != "KGRAG_NEO4J_URI" and not key.startswith(
            "KGRAG_NEO4J_"
        ) and key != "KGRAG_TEST_MODELS_DIR":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KGRAG_CONFIG", str(tmp_path / "no-such-kgrag.toml"))
    # Models are the test's own too: nothing is installed into (or read from) the user's
    # shared models folder unless a test names it (LOCAL_MODEL), and a missing model is an
    # error, not a 469 MB download.
    monkeypatch.setenv("KGRAG_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("KGRAG_MODELS_INSTALL", "false")
    from core.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_falkor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One real embedded FalkorDB server for the tests that need a graph; stopped at the end."""
    from core.settings import load_settings
    from kg.store import EmbeddedFalkorServer

    data = tmp_path_factory.mktemp("shared-falkor")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KGRAG_CONFIG", str(data / "none.toml"))
        server = EmbeddedFalkorServer(load_settings(data_dir=data))
    status = server.start()
    assert status.port is not None
    try:
        yield status.host, status.port
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """The session's real Neo4j: embedded Neo4j Community, or KGRAG_NEO4J_URI's server."""
    with running_neo4j(tmp_path_factory.mktemp("neo4j")) as server:
        yield server


@pytest.fixture
def kgrag_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
              shared_falkor: tuple[str, int]) -> Path:
    """Environment of a kgrag user with their own data dir and graph (on the shared server).

    Returns the data dir. Flows and CLI commands run in-process see these settings.
    """
    host, port = shared_falkor
    data = tmp_path / "kgrag-data"
    monkeypatch.setenv("KGRAG_DATA_DIR", str(data))
    monkeypatch.setenv("KGRAG_FALKOR_EXTERNAL", "true")
    monkeypatch.setenv("KGRAG_FALKOR_HOST", host)
    monkeypatch.setenv("KGRAG_FALKOR_PORT", str(port))
    monkeypatch.setenv("KGRAG_GRAPH_NAME", f"t_{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("KGRAG_EMBED_DEVICE", "cpu")
    if LOCAL_MODEL.exists():
        monkeypatch.setenv("KGRAG_LLM_MODEL_PATH", str(LOCAL_MODEL))
    from core.settings import get_settings

    get_settings.cache_clear()
    return data


@pytest.fixture
def scripted_llm(monkeypatch: pytest.MonkeyPatch) -> object:
    """Every Components.llm is the scripted extractor of tests/corpus.py in the real layers."""
    from tests.corpus import scripted_llm_fixture

    return scripted_llm_fixture(monkeypatch)
