"""infra/: the compose file validated offline by Debian's `docker-compose` (no Docker engine
runs here), its Neo4j schema kept equal to kgrag's, and the worker script well-formed.

What these tests cannot show: that the images start and talk to each other. That part is
checked on paper only (infra/README.md says so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings
from kg.store.cypher import NEO4J

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "docker-compose.yml"
CORE_SERVICES = {"neo4j", "neo4j-init", "postgres", "prefect-server", "vllm", "ui", "worker"}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="Debian's docker-compose is not installed (apt-get install docker-compose; "
    "`make systools` installs it)",
)


def compose_config(*extra: str, env_file: Path | None = INFRA / ".env.example"
                   ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NEO4J_", "POSTGRES_", "VLLM_", "KGRAG_"))}
    args = ["docker-compose"]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    return subprocess.run([*args, "-f", str(COMPOSE), *extra, "config"], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    if shutil.which("docker-compose") is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install "
                    "docker-compose; `make systools` installs it)")
    proc = compose_config()
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


@needs_compose
def test_compose_file_validates_with_the_example_env(config: dict[str, Any]) -> None:
    assert set(config["services"]) >= CORE_SERVICES
    dask = {n for n, s in config["services"].items() if "dask" in s.get("profiles", [])}
    assert dask == {"dask-scheduler", "dask-worker"}


@needs_compose
def test_missing_passwords_are_refused_by_name() -> None:
    proc = compose_config(env_file=None)
    assert proc.returncode != 0
    assert "NEO4J_PASSWORD" in proc.stderr or "POSTGRES_PASSWORD" in proc.stderr


@needs_compose
def test_services_are_wired_to_each_other(config: dict[str, Any]) -> None:
    s = config["services"]
    assert s["neo4j"]["environment"]["NEO4J_AUTH"] == "neo4j/change-me-neo4j"
    assert any(v.endswith(":/data:rw") or v.endswith(":/data") for v in _volumes(s["neo4j"]))
    assert "/init/schema.cypher" in " ".join(s["neo4j-init"]["entrypoint"])
    db_url = s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert db_url == "postgresql+asyncpg://prefect:change-me-postgres@postgres:5432/prefect"

    vllm = s["vllm"]
    command = vllm["command"] if isinstance(vllm["command"], str) else " ".join(
        vllm["command"])
    for flag in ("--guided-decoding-backend xgrammar", "--enable-prefix-caching",
                 "--served-model-name kgrag-llm", "--max-num-seqs 32"):
        assert flag in command
    (gpu,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]

    for name in ("ui", "worker", "dask-worker"):
        env = s[name]["environment"]
        assert env["KGRAG_GRAPH_BACKEND"] == "neo4j"
        assert env["KGRAG_NEO4J_URI"] == "neo4j://neo4j:7687"
        assert env["KGRAG_LLM_BASE_URL"] == "http://vllm:8000/v1"
        assert env["KGRAG_LLM_MODEL"] == "kgrag-llm"  # what vLLM serves
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "worker.sh" in " ".join(s["worker"]["command"])


@needs_compose
def test_every_kgrag_variable_is_a_real_setting_and_no_comment_leaks(
        config: dict[str, Any]) -> None:
    fields = {f"KGRAG_{name.upper()}" for name in Settings.model_fields}
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key.startswith("KGRAG_"):
                assert key in fields, f"{name}: {key} is not a kgrag setting"
            assert "#" not in str(value), f"{name}: {key}={value!r} (inline comment?)"


@needs_compose
def test_ports_are_published_on_loopback_only(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_neo4j_init_creates_exactly_kgrags_schema() -> None:
    text = (INFRA / "neo4j" / "schema.cypher").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.startswith("//"))
    statements = [s.strip() for s in code.split(";") if s.strip()]
    assert statements == list(NEO4J.schema_statements)


def test_worker_script_is_valid_bash_and_refuses_without_an_api() -> None:
    script = INFRA / "worker.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "PREFECT_API_URL" in proc.stderr


def _volumes(service: dict[str, Any]) -> list[str]:
    out = []
    for v in service.get("volumes", []):
        out.append(v if isinstance(v, str) else f"{v.get('source')}:{v['target']}")
    return out
