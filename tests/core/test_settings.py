from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings, get_settings, load_settings


def test_defaults_are_the_embedded_stack() -> None:
    s = load_settings()
    assert s.graph_backend == "falkor"
    assert s.llm_backend == "local"
    assert s.embed_model == "all-MiniLM-L6-v2"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("KGRAG_GRAPH_BACKEND", "neo4j")
    monkeypatch.setenv("KGRAG_LLM_CONCURRENCY", "7")
    s = load_settings()
    assert s.data_dir == tmp_path / "d"
    assert s.graph_backend == "neo4j"
    assert s.llm_concurrency == 7
    assert s.index_dir == tmp_path / "d" / "indexes"


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "kgrag.toml"
    cfg.write_text('data_dir = "toml-data"\nllm_backend = "openai"\nllm_max_tokens = 99\n')
    monkeypatch.setenv("KGRAG_CONFIG", str(cfg))
    monkeypatch.setenv("KGRAG_LLM_MAX_TOKENS", "55")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.llm_backend == "openai"
    assert s.llm_max_tokens == 55
    assert s.data_dir == tmp_path / "toml-data"


def test_unknown_value_is_one_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_GRAPH_BACKEND", "kuzu")
    with pytest.raises(ConfigError) as info:
        load_settings()
    msg = str(info.value)
    assert "KGRAG_GRAPH_BACKEND" in msg and "kuzu" in msg and "falkor" in msg
    assert "kgrag doctor" in info.value.hint or "kgrag.toml" in info.value.hint


def test_unknown_setting_in_toml_is_refused(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    cfg = tmp_path / "kgrag.toml"
    cfg.write_text('grahp_backend = "falkor"\n')
    monkeypatch.setenv("KGRAG_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="grahp_backend"):
        load_settings()


def test_every_field_is_documented() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


def test_get_settings_is_cached() -> None:
    assert get_settings() is get_settings()
