"""Children stop with their parent.

`kgrag ui` runs Streamlit in a child process, `kgrag ingest` Prefect's ephemeral API server
(uvicorn, started by Prefect, stopped by its atexit hook). Python's default on SIGTERM is
to die on the spot: no `finally`, no atexit, so those children went on serving. Here:

- `exit_on_termination()`: SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main
  thread, so `finally` blocks, context managers (the writer lock) and atexit hooks (Prefect
  stopping its server) run, as on Ctrl-C;
- `run_foreground(args)`: a child of ours in the foreground; a SIGTERM or SIGHUP for us
  stops it first, and on Linux the kernel sends it SIGTERM when we die however we die
  (kill -9 included: PR_SET_PDEATHSIG).

    >>> exit_on_termination()                       # doctest: +SKIP
    >>> run_foreground(["streamlit", "run", "app/ui.py"])   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

#: Signals that end kgrag the way Ctrl-C does (SIGINT keeps Python's own handling).
TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def exit_on_termination() -> None:
    """From now on SIGTERM / SIGHUP unwind the main thread (see the module docstring)."""
    for sig in TERMINATING:
        signal.signal(sig, _raise_exit)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_foreground(args: Sequence[str], stop_timeout_s: float = 10.0) -> int:
    """Run `args` until it exits and return its exit code. Ctrl-C reaches it from the
    terminal; SIGTERM / SIGHUP sent to us are passed on to it; it never outlives us."""
    proc = subprocess.Popen(list(args), preexec_fn=_die_with_parent(os.getpid()))
    stopping: list[int] = []

    def pass_on(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in TERMINATING}
    try:
        code = _wait(proc, stop_timeout_s, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # we are leaving on an exception (Ctrl-C): it goes too
            proc.terminate()
            _wait(proc, stop_timeout_s, [signal.SIGTERM])
    return 128 + stopping[0] if stopping else code


def _wait(proc: subprocess.Popen[bytes], stop_timeout_s: float, stopping: list[int]) -> int:
    deadline: float | None = None
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if not stopping:
                continue
            if deadline is None:
                deadline = time.monotonic() + stop_timeout_s
            elif time.monotonic() > deadline:
                proc.kill()  # asked to stop and did not in time: no choice left


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec function: the kernel sends the child SIGTERM when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the line above
            os._exit(1)

    return preexec
