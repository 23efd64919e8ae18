"""Processes the tests start: a local Prefect server, and killing process groups."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

KGRAG = str(Path(sys.executable).parent / "kgrag")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_prefect_server(data: Path, extra_env: dict[str, str] | None = None
                           ) -> Iterator[str]:
    """`kgrag server start` with its data in `data`; yields the API URL. Stopped with
    `kgrag server stop`, which must leave no process behind (asserted)."""
    env = {**os.environ, "KGRAG_DATA_DIR": str(data), "KGRAG_CONFIG": str(data / "none.toml"),
           **(extra_env or {})}
    env.pop("PREFECT_API_URL", None)
    port = free_port()
    t = time.perf_counter()
    started = subprocess.run([KGRAG, "server", "start", "--port", str(port), "--no-ui"],
                             env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    url = f"http://127.0.0.1:{port}/api"
    assert f"export PREFECT_API_URL={url}" in started.stdout
    print(f"prefect server up in {time.perf_counter() - t:.1f}s")
    state = json.loads((data / "run" / "prefect-server.json").read_text())
    try:
        status = subprocess.run([KGRAG, "server", "status", "--json"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0
        assert json.loads(status.stdout)["api_source"] == "local server"
        yield url
    finally:
        stopped = subprocess.run([KGRAG, "server", "stop"], env=env, capture_output=True,
                                 text=True, timeout=60)
        group_gone = _group_gone(int(state["pid"]))
        if not group_gone:
            kill_group(int(state["pid"]))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert group_gone, "kgrag server stop left processes running"
    status = subprocess.run([KGRAG, "server", "status"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 3 and "not running" in status.stdout


def _group_gone(pgid: int, timeout_s: float = 10.0) -> bool:
    from flows.prefect_server import group_alive

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.2)
    return False


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
