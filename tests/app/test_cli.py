"""The `kgrag` command line as a user runs it (in-process via Typer's runner, real parts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.corpus import write_corpus

runner = CliRunner()


def kgrag(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_the_commands() -> None:
    code, out, _ = kgrag("--help")
    assert code == 0
    for cmd in ("ingest", "cypher", "doctor", "services", "delete", "graph"):
        assert cmd in out


def test_config_json_lists_every_setting_with_its_env_var() -> None:
    code, out, _ = kgrag("config", "--json")
    report = json.loads(out)
    assert code == 0
    by_env = {r["env"]: r for r in report["settings"]}
    assert by_env["KGRAG_GRAPH_BACKEND"]["value"] == "falkor"
    assert by_env["KGRAG_GRAPH_BACKEND"]["source"] == "default"
    assert all(r["description"] for r in report["settings"])


def test_config_is_found_from_a_subfolder_and_its_paths_are_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "notes" / "deep").mkdir(parents=True)
    (project / "kgrag.toml").write_text('data_dir = "kg-data"\nmodels_dir = "models"\n'
                                        'graph_name = "mine"\n')
    # As a user has it: no variable names the file (found by walking up) or the models dir.
    monkeypatch.delenv("KGRAG_CONFIG")
    monkeypatch.delenv("KGRAG_MODELS_DIR")
    monkeypatch.chdir(project / "notes" / "deep")
    monkeypatch.setenv("KGRAG_GRAPH_NAME", "from_env")
    code, out, _ = kgrag("config", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["config_file"] == str(project / "kgrag.toml")
    assert report["data_dir"] == str(project / "kg-data")  # not notes/deep/kg-data
    assert report["models_dir"] == str(project / "models")
    by_name = {r["setting"]: r for r in report["settings"]}
    assert by_name["data_dir"]["source"] == "file"
    assert by_name["graph_name"] == {**by_name["graph_name"], "value": "from_env",
                                     "source": "env"}
    code, out, _ = kgrag("config")
    assert f"config file: {project / 'kgrag.toml'}" in " ".join(out.split())

    monkeypatch.chdir(tmp_path)  # above the project: no file, the defaults
    code, out, _ = kgrag("config", "--json")
    assert json.loads(out)["config_file"] is None


def kgrag_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user's shell runs it."""
    exe = Path(sys.executable).parent / "kgrag"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))


def test_bad_setting_is_one_line_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_LLM_BACKEND", "gpt5")
    proc = kgrag_process("config")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "KGRAG_LLM_BACKEND" in proc.stderr and "fix:" in proc.stderr


def test_ingest_missing_path_says_so(kgrag_env: Path) -> None:
    code, _, err = kgrag("ingest", "/no/such/folder")
    assert code == 2 and "no such file or folder" in err


@pytest.mark.services
def test_ingest_json_then_cypher_json_and_read_only(kgrag_env: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    code, out, _ = kgrag("ingest", str(corpus), "--no-extract", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["new"] == 3 and summary["failed"] == []

    code, out, _ = kgrag("cypher", "MATCH (d:Document) RETURN d.title AS title ORDER BY title",
                         "--json")
    assert code == 0
    result = json.loads(out)
    assert result["columns"] == ["title"]
    assert [r["title"] for r in result["rows"]] == ["Albert Einstein", "curie", "danube"]

    code, out, _ = kgrag("cypher", "MATCH (d:Document) RETURN d.id AS id", "--limit", "1",
                         "--json")
    assert len(json.loads(out)["rows"]) == 1

    proc = kgrag_process("cypher", "MATCH (d:Document) DETACH DELETE d")
    assert proc.returncode == 2 and "read-only" in proc.stderr
    assert "Traceback" not in proc.stderr
    code, out, _ = kgrag("graph", "stats", "--json")
    assert json.loads(out)["nodes"]["Document"] == 3

    code, out, _ = kgrag("cypher", "MATCH (d:Document {title: $t}) RETURN d.id AS id",
                         "-p", 't="danube"', "--json")
    doc_id = json.loads(out)["rows"][0]["id"]
    code, out, _ = kgrag("delete", doc_id, "nope", "--json")
    report = json.loads(out)
    assert report["documents"] == 1 and report["not_found"] == ["nope"]
    code, out, _ = kgrag("graph", "stats", "--json")
    assert json.loads(out)["nodes"]["Document"] == 2


def test_library_progress_bars_stay_out_of_the_output() -> None:
    """The embedder's load ("Loading weights: 100%| 103/103") printed into `kgrag ask`."""
    code = ("from app.cli import quiet_libraries; quiet_libraries()\n"
            "from core.embed import SentenceTransformerEmbedder\n"
            "SentenceTransformerEmbedder(device='cpu').embed(['warm'])\n"
            "from transformers.utils import logging; print(logging.is_progress_bar_enabled())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert "Loading weights" not in done.stderr and "it/s]" not in done.stderr


def test_prefect_run_log_stays_off_the_console_of_commands_with_their_own_progress(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import quiet_libraries

    key = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
    monkeypatch.setenv(key, "unset at the end")  # so monkeypatch restores the environment
    monkeypatch.delenv(key)
    quiet_libraries(["serve"])  # the scheduler's console keeps Prefect's run log
    assert key not in os.environ
    quiet_libraries(["ingest", "docs/"])
    assert os.environ[key] == "WARNING"
    monkeypatch.setenv(key, "INFO")  # what the user set wins
    quiet_libraries(["evaluate", "q.jsonl"])
    assert os.environ[key] == "INFO"
