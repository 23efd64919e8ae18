"""Where the seconds of one piece of work go: named stages timed into the current record.

A caller opens a record (`timings()`), the code it calls marks its stages (`stage(name)`),
and nested or repeated stages add up. A stage marked with no record open costs nothing,
so library code can mark stages whether or not anyone is listening. The record lives in
a context variable: concurrent questions (UI sessions, threads) each see their own.

    >>> with timings() as t:
    ...     with stage("retrieve"):
    ...         pass
    >>> sorted(t)
    ['retrieve']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[dict[str, float] | None] = ContextVar("kgrag_timings", default=None)


@contextmanager
def timings(*, reuse: bool = False) -> Iterator[dict[str, float]]:
    """A fresh record (stage -> seconds) for the stages marked inside the block; with
    `reuse`, the record already open (if any), so a caller's record sees the stages too."""
    existing = _current.get()
    if reuse and existing is not None:
        yield existing
        return
    record: dict[str, float] = {}
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Adds the block's wall time to stage `name` of the open record (if any). A stage
    inside another stage of the same record is taken out of the outer one, so the stages
    of a record never count a second twice and sum to the time they cover."""
    record = _current.get()
    if record is None:
        yield
        return
    outer = _open.get()
    token = _open.set([])
    start = time.perf_counter()
    try:
        yield
    finally:
        inner = _open.get() or []
        _open.reset(token)
        spent = time.perf_counter() - start
        record[name] = record.get(name, 0.0) + spent - sum(inner)
        if outer is not None:
            outer.append(spent)


def add(name: str, seconds: float) -> None:
    """Adds `seconds` measured elsewhere (e.g. a model's own counters) to stage `name`;
    they are taken out of the stage open around it, like a nested stage."""
    record = _current.get()
    if record is None or seconds <= 0:
        return
    record[name] = record.get(name, 0.0) + seconds
    outer = _open.get()
    if outer is not None:
        outer.append(seconds)


_open: ContextVar[list[float] | None] = ContextVar("kgrag_timing_open", default=None)
