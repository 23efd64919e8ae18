"""Children stop with their parent: Streamlit under `kgrag ui`, Prefect's ephemeral API
server under `kgrag ingest`, whether kgrag gets SIGTERM or (the UI) kill -9."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.test_cli_one_writer import chunks_in_graph, long_corpus
from tests.processes import free_port

pytestmark = pytest.mark.services

KGRAG = str(Path(sys.executable).parent / "kgrag")


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def kgrag_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """kgrag in its own process group, killed with all of it at the end whatever happens
    (the children this test is about included, should they outlive kgrag)."""
    proc = subprocess.Popen([KGRAG, *args], env=dict(os.environ), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_streamlit_stops_with_kgrag_ui(kgrag_env: Path, how: signal.Signals) -> None:
    port = free_port()
    health = f"http://127.0.0.1:{port}/_stcore/health"
    with kgrag_process("ui", "--port", str(port)) as ui:
        wait_until(lambda: answers(health), 120, "the UI to answer")
        (streamlit,) = [k for k in children(ui.pid) if "streamlit" in cmdline(k)]
        ui.send_signal(how)
        code = ui.wait(30)
        assert code == (128 + how if how == signal.SIGTERM else -how)
        wait_until(lambda: not alive(streamlit), 20, "Streamlit to stop")
        assert not answers(health)


def test_prefects_ephemeral_api_server_stops_with_kgrag_ingest(kgrag_env: Path,
                                                                tmp_path: Path) -> None:
    corpus = long_corpus(tmp_path / "letters", 200)
    os.environ["KGRAG_INGEST_BATCH_DOCS"] = "1"  # a long run, so it is killed mid-way
    try:
        with kgrag_process("ingest", str(corpus), "--no-extract") as ingest:
            wait_until(lambda: chunks_in_graph() > 0 or ingest.poll() is not None, 240,
                       "the ingest to write chunks")
            servers = [k for k in children(ingest.pid) if "uvicorn" in cmdline(k)]
            assert ingest.poll() is None and servers, "no ephemeral API server to stop"
            ingest.send_signal(signal.SIGTERM)
            code = ingest.wait(60)
            wait_until(lambda: not any(alive(s) for s in servers), 20,
                       "the ephemeral API server to stop")
            assert code == 128 + signal.SIGTERM
    finally:
        del os.environ["KGRAG_INGEST_BATCH_DOCS"]
