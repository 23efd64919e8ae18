"""Test-wide set-up: no test reads the developer's kgrag.toml or touches the hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test sees only the KGRAG_* settings it sets itself."""
    for key in list(os.environ):
        if key.startswith("KGRAG_") and key != "KGRAG_NEO4J_URI" and not key.startswith(
            "KGRAG_NEO4J_"
        ) and key != "KGRAG_TEST_MODELS_DIR":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KGRAG_CONFIG", str(tmp_path / "no-such-kgrag.toml"))
    from core.settings import get_settings

    get_settings.cache_clear()
