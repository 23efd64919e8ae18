"""Progress of long flows, reported to whoever is watching (the CLI's bar, the UI).

Flows call `report(stage, done, total)`; a surface installs a sink with `watching(sink)`.
With no sink installed, reports go nowhere (a scheduled run has no terminal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressSink = Callable[[str, int, int], None]  # (stage, done, total)

_sinks: list[ProgressSink] = []


def report(stage: str, done: int, total: int) -> None:
    for sink in list(_sinks):
        sink(stage, done, total)


@contextmanager
def watching(sink: ProgressSink) -> Iterator[None]:
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)
