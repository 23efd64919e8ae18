"""The real Neo4j the tests run on: Neo4j Community embedded in a JVM (infra/neo4j/server.sh).

One server per test session, on a fresh data folder, stopped by its pid at the end (and by
itself if the test process dies). With `KGRAG_NEO4J_URI` set, the tests use that server
instead and start nothing. Without Java or Maven the Neo4j tests skip, except under CI,
where they fail: there a missing toolchain is a broken build, not a choice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO / "infra" / "neo4j" / "server.sh"


@dataclass(frozen=True)
class Neo4jServer:
    """Where the session's Neo4j listens and how to log in."""

    uri: str
    user: str
    password: str
    database: str = "neo4j"
    data_dir: Path | None = None  # None: an external server the tests did not start

    def settings_env(self) -> dict[str, str]:
        """The KGRAG_* variables that point kgrag at this server."""
        return {
            "KGRAG_GRAPH_BACKEND": "neo4j",
            "KGRAG_NEO4J_URI": self.uri,
            "KGRAG_NEO4J_USER": self.user,
            "KGRAG_NEO4J_PASSWORD": self.password,
            "KGRAG_NEO4J_DATABASE": self.database,
        }


def external_server() -> Neo4jServer | None:
    uri = os.environ.get("KGRAG_NEO4J_URI", "")
    if not uri:
        return None
    return Neo4jServer(
        uri,
        os.environ.get("KGRAG_NEO4J_USER", "neo4j"),
        os.environ.get("KGRAG_NEO4J_PASSWORD", ""),
        os.environ.get("KGRAG_NEO4J_DATABASE", "neo4j"),
    )


def _script(*args: str, timeout_s: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", str(SERVER_SCRIPT), *args],
        capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"infra/neo4j/server.sh {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stderr[-4000:]}",
            pytrace=False,
        )
    return done.stdout


def _require_toolchain() -> None:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if not missing:
        return
    why = f"{' and '.join(missing)} not found: the Neo4j tests need Java 17 and Maven"
    if os.environ.get("CI"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def start(data_dir: Path) -> Neo4jServer:
    """Start (building once if needed) the embedded Neo4j on `data_dir` and wait for Bolt."""
    _require_toolchain()
    env = {**os.environ, "KGRAG_NEO4J_WATCH_PID": str(os.getpid())}
    out = _script("start", str(data_dir), timeout_s=900, env=env)
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return Neo4jServer(
        found["KGRAG_NEO4J_URI"],
        found["KGRAG_NEO4J_USER"],
        found["KGRAG_NEO4J_PASSWORD"],
        found["KGRAG_NEO4J_DATABASE"],
        data_dir=data_dir,
    )


def stop(data_dir: Path) -> None:
    _script("stop", str(data_dir), timeout_s=120)


@contextmanager
def running_neo4j(data_dir: Path) -> Iterator[Neo4jServer]:
    """The external server when KGRAG_NEO4J_URI is set, else an embedded one on data_dir."""
    external = external_server()
    if external is not None:
        yield external
        return
    server = start(data_dir)
    try:
        yield server
    finally:
        stop(data_dir)
