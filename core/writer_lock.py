"""One writer at a time per data dir.

An ingest or a delete changes the graph and the FAISS indexes together. Two at once would
each save its own copy of an index, and the last save would win: the other's vectors would
be lost although their documents are already marked done. So every writer holds
`run_dir/writer.lock` for as long as it writes: an OS file lock (`filelock`, flock on
Unix), which the kernel releases when the holder dies, even by kill -9. The holder writes
who it is into the lock file, so a second writer can say whom it waits for:

    >>> with writer_lock(settings, "ingest", wait_s=0):    # doctest: +SKIP
    ...     ingest_corpus(["docs/"])
    WriterBusyError: an ingest is running (pid 4242, since 2025-01-05 14:02:11)

A hold nests: the CLI takes the lock, then the flow it calls takes it again for free.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from core.errors import KgragError
from core.settings import Settings

LOCK_FILE = "writer.lock"
#: How often a waiting writer looks again (and says again whom it waits for).
_POLL_S = 0.2
_REPORT_EVERY_S = 60.0

#: Lock files this context holds (so a nested hold in the same flow of work is free).
_held: ContextVar[frozenset[str]] = ContextVar("kgrag_writer_locks", default=frozenset())


class WriterBusyError(KgragError):
    """Another process writes to this data dir (and the caller chose not to wait)."""

    def __init__(self, message: str, hint: str, holder: WriterRecord | None) -> None:
        super().__init__(message, hint)
        self.holder = holder


@dataclass(frozen=True)
class WriterRecord:
    """Who holds the lock: what it does, its pid and host, since when (epoch seconds)."""

    what: str
    pid: int
    host: str
    since: float

    def describe(self) -> str:
        article = "an" if self.what[:1] in "aeiou" else "a"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"{article} {self.what} is running (pid {self.pid}{where}, since {when})"


def lock_path(settings: Settings) -> Path:
    return settings.run_dir / LOCK_FILE


@contextlib.contextmanager
def writer_lock(
    settings: Settings,
    what: str = "ingest",
    *,
    wait_s: float | None = None,
    notify: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the data dir's writer lock inside the block.

    `wait_s`: how long to wait for another writer (None: until it finishes; 0: not at
    all); past it, `WriterBusyError` says who writes. `notify` hears, once a minute, whom
    this one waits for.
    """
    path = lock_path(settings)
    key = str(path)
    if key in _held.get():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    record = WriterRecord(what, os.getpid(), socket.gethostname(), time.time())
    lock = FileLock(path, on_acquired=lambda fd: _write_record(fd, record))
    _acquire(lock, path, wait_s, notify)
    token = _held.set(_held.get() | {key})
    try:
        yield
    finally:
        _held.reset(token)
        with contextlib.suppress(OSError):
            os.truncate(path, 0)  # no stale record for the next holder's waiters
        lock.release()


def _acquire(lock: FileLock, path: Path, wait_s: float | None,
             notify: Callable[[str], None] | None) -> None:
    deadline = None if wait_s is None else time.monotonic() + max(wait_s, 0.0)
    reported = float("-inf")
    while True:
        # Bounded tries: filelock refuses an endless wait on a path this process holds.
        step = 5.0 if deadline is None else max(0.0, min(5.0, deadline - time.monotonic()))
        try:
            lock.acquire(timeout=step, poll_interval=_POLL_S)
            return
        except Timeout:
            holder = _read_record(path)
        if holder is not None and holder.pid == os.getpid() \
                and holder.host == socket.gethostname():
            # Another thread of this process writes; waiting here could wait on ourselves.
            raise _busy(holder, waited=False)
        if deadline is not None and time.monotonic() >= deadline:
            raise _busy(holder, waited=wait_s is not None and wait_s > 0)
        if notify is not None and time.monotonic() - reported >= _REPORT_EVERY_S:
            notify(f"waiting for the data dir: {_who(holder)}")
            reported = time.monotonic()


def _busy(holder: WriterRecord | None, waited: bool) -> WriterBusyError:
    message = _who(holder) + (" and did not finish in time" if waited else "")
    return WriterBusyError(
        message,
        hint="one ingest or delete writes to a data dir at a time; run this again when it "
        "has finished, or add --wait to wait for it",
        holder=holder,
    )


def _who(holder: WriterRecord | None) -> str:
    return holder.describe() if holder else "another ingest or delete is running"


def _write_record(fd: int, record: WriterRecord) -> None:
    data = json.dumps({"what": record.what, "pid": record.pid, "host": record.host,
                       "since": record.since}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_record(path: Path) -> WriterRecord | None:
    try:
        raw = json.loads(path.read_text())
        return WriterRecord(str(raw["what"]), int(raw["pid"]), str(raw["host"]),
                            float(raw["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record yet (the holder is between locking and writing)
