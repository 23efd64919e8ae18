"""Run the Streamlit app: in the foreground (`kgrag ui`) or detached (`kgrag ui --detach`,
stopped by `kgrag services stop`), always on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.errors import ServiceError
from core.settings import Settings

SCRIPT = Path(__file__).resolve().parent / "ui.py"
STATE = "ui.json"


def command(port: int, headless: bool = True) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT),
            "--server.address", "127.0.0.1", "--server.port", str(port),
            "--server.headless", str(headless).lower(),
            "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "false",
            "--client.toolbarMode", "minimal"]


def check_port(port: int) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise ServiceError(f"port {port} on 127.0.0.1 is already in use",
                               hint="pick another with --port, or `kgrag services stop` if "
                               "it is an earlier kgrag UI")


def running(settings: Settings) -> dict[str, int | str] | None:
    """The detached UI recorded for this data dir, if its process is alive."""
    state = settings.run_dir / STATE
    try:
        info: dict[str, int | str] = json.loads(state.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def start_detached(settings: Settings, port: int, wait_s: float = 60.0) -> str:
    """Start the UI in its own session, wait until it answers, return its URL."""
    if (info := running(settings)) is not None:
        return str(info["url"])
    check_port(port)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.run_dir / "ui.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"the UI exited at start (code {proc.returncode})",
                               hint=f"see {settings.run_dir / 'ui.log'}")
        try:
            if httpx.get(url + "/_stcore/health", timeout=2).status_code == 200:
                state = {"pid": proc.pid, "port": port, "url": url}
                (settings.run_dir / STATE).write_text(json.dumps(state))
                return url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise ServiceError("the UI did not answer within a minute",
                       hint=f"see {settings.run_dir / 'ui.log'}")


def stop(settings: Settings) -> bool:
    info = running(settings)
    (settings.run_dir / STATE).unlink(missing_ok=True)
    if info is None:
        return False
    os.killpg(int(info["pid"]), signal.SIGTERM)
    return True
