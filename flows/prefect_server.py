"""Which Prefect API kgrag talks to, and the local Prefect server `kgrag server start` runs.

Schedules need a Prefect server (its scheduler creates the runs); the ephemeral API that
flows use by default has none. For one machine, `LocalPrefectServer` runs
`prefect server start` on 127.0.0.1 as a detached process with its SQLite database under
`data_dir/prefect`, and records pid, port and URL in `run_dir/prefect-server.json`.

The API is chosen in this order (`resolve_api`):

1. the `prefect_api_url` setting (KGRAG_PREFECT_API_URL);
2. PREFECT_API_URL from the environment or the active Prefect profile;
3. the server `kgrag server start` runs for this data dir;
4. none: Prefect's ephemeral API.

    >>> with prefect_api(get_settings()):          # doctest: +SKIP
    ...     list_schedules()
"""

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from core.errors import ServiceError
from core.settings import Settings

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
STATE_FILE = "prefect-server.json"
LOG_FILE = "prefect-server.log"


@dataclass(frozen=True)
class PrefectApi:
    """The API to use: `url` None means the ephemeral API; `source` says why."""

    url: str | None
    source: str  # "setting" | "environment" | "local server" | "ephemeral"


@dataclass(frozen=True)
class PrefectServerStatus:
    running: bool
    url: str | None = None
    port: int | None = None
    pid: int | None = None
    uptime_s: float | None = None
    database: str = ""
    log_file: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LocalPrefectServer:
    """`prefect server start` on loopback for one data dir: start, status, stop.

    Starting when this data dir's server already answers returns it as it is.
    """

    def __init__(self, settings: Settings, *, start_timeout_s: float = 90.0,
                 ui: bool = True) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self.ui = ui
        self.home = settings.data_dir / "prefect"
        self.database = self.home / "prefect.db"
        self.state_file = settings.run_dir / STATE_FILE
        self.log_file = settings.run_dir / LOG_FILE

    def start(self, port: int = DEFAULT_PORT) -> PrefectServerStatus:
        status = self.status()
        if status.running:
            return status
        if _port_in_use(port):
            raise ServiceError(
                f"port {port} on {HOST} is in use, so the Prefect server cannot listen there",
                hint="pick another one: kgrag server start --port N",
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.database}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true" if self.ui else "false",
        }
        env.pop("PREFECT_API_URL", None)  # the server is the API; it needs no client URL
        args = [sys.executable, "-m", "prefect", "server", "start",
                "--host", HOST, "--port", str(port)]
        with open(self.log_file, "wb") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.home, close_fds=True,
                start_new_session=True,  # detached, and its own process group to stop
            )
        self._write_state({"pid": proc.pid, "port": port, "started_at": time.time()})
        try:
            self._wait_ready(proc, port)
        except BaseException:
            _stop_group(proc.pid, 5.0)
            proc.wait(timeout=5)
            self.state_file.unlink(missing_ok=True)
            raise
        return self.status()

    def status(self) -> PrefectServerStatus:
        base = PrefectServerStatus(running=False, database=str(self.database),
                                   log_file=str(self.log_file))
        state = self._read_state()
        if state is None:
            return base
        pid, port = int(state["pid"]), int(state["port"])
        url = api_url(port)
        if not _is_prefect_process(pid) or not _healthy(url):
            return base
        return PrefectServerStatus(
            running=True, url=url, port=port, pid=pid,
            uptime_s=round(time.time() - float(state["started_at"]), 1),
            database=str(self.database), log_file=str(self.log_file),
        )

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the server (and the processes it started). False when none was running."""
        state = self._read_state()
        if state is None:
            return False
        pid = int(state["pid"])
        running = _is_prefect_process(pid)
        if running:
            _stop_group(pid, timeout_s)
        self.state_file.unlink(missing_ok=True)
        return running

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> None:
        url = api_url(port)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(
                    f"the Prefect server exited at start (code {proc.returncode}); log tail:"
                    f"\n{_tail(self.log_file)}",
                    hint=f"read {self.log_file}",
                )
            if _healthy(url):
                return
            time.sleep(0.25)
        raise ServiceError(
            f"the Prefect server did not answer on {url} within {self.start_timeout_s:.0f}s",
            hint=f"read {self.log_file}",
        )

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) and {"pid", "port"} <= state.keys() else None

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)


# --------------------------------------------------------------------------- the API


def api_url(port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}/api"


def resolve_api(settings: Settings) -> PrefectApi:
    """The Prefect API kgrag uses with these settings (see the module docstring)."""
    if settings.prefect_api_url:
        return PrefectApi(settings.prefect_api_url.rstrip("/"), "setting")
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        return PrefectApi(str(configured).rstrip("/"), "environment")
    local = LocalPrefectServer(settings).status()
    if local.running:
        return PrefectApi(local.url, "local server")
    return PrefectApi(None, "ephemeral")


def require_server(settings: Settings) -> PrefectApi:
    """The API, which must be a server that answers (schedules cannot live elsewhere)."""
    api = resolve_api(settings)
    if api.url is None:
        raise ServiceError(
            "schedules need a Prefect server, and none is configured",
            hint="start one for this data dir with `kgrag server start`, or point kgrag at "
            "yours with KGRAG_PREFECT_API_URL / PREFECT_API_URL",
        )
    if not _healthy(api.url):
        hint = ("start it again: kgrag server start" if api.source == "local server"
                else f"start the server, or correct {_variable(api)}")
        raise ServiceError(f"the Prefect API at {api.url} does not answer", hint=hint)
    return api


@contextlib.contextmanager
def prefect_api(settings: Settings, *, server: bool = False) -> Iterator[PrefectApi]:
    """Prefect calls inside use the resolved API (and flow-run subprocesses inherit it).

    `server=True`: a server must answer (schedules, serve); otherwise the ephemeral API
    is fine.
    """
    api = require_server(settings) if server else resolve_api(settings)
    if api.url is None or api.source == "environment":
        yield api
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api.url}):
        yield api


def _variable(api: PrefectApi) -> str:
    return "KGRAG_PREFECT_API_URL" if api.source == "setting" else "PREFECT_API_URL"


# --------------------------------------------------------------------------- helpers


def _healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


def _is_prefect_process(pid: int) -> bool:
    """Alive, not a zombie, and a `prefect server` (not a recycled pid)."""
    proc = Path(f"/proc/{pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not proc.exists():
        return True  # no procfs (macOS): trust the pid
    try:
        if (proc / "stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return b"prefect" in cmdline and b"server" in cmdline


def _stop_group(pid: int, timeout_s: float) -> None:
    """SIGTERM the server's process group (it runs uvicorn and services), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not group_alive(pid):
                return
            time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` is running (zombies count as gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of the group (already exited, not yet reaped by us) count as gone.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return not Path("/proc").exists()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
