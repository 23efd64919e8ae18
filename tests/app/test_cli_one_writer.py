"""One writer per data dir, as users meet it: two `kgrag ingest` at once lose no vectors;
a second writer is told who writes (exit code 2) or, with --wait, waits for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.settings import get_settings
from flows.components import CHUNK_INDEX, Components
from tests.core.test_writer_lock import hold_in_another_process
from tests.corpus import CORPUS, write_corpus

pytestmark = pytest.mark.services

KGRAG = str(Path(sys.executable).parent / "kgrag")
OTHER = {
    "franklin.txt": "Rosalind Franklin was a chemist born in London. Her X-ray photographs "
                    "showed the double helix structure of DNA at King's College.",
    "mendel.txt": "Gregor Mendel was a friar born in Heinzendorf. He bred pea plants in the "
                  "garden of the abbey in Brno and found the laws of heredity.",
    "rhine.txt": "The Rhine is a river in Europe. The Rhine flows through Basel and Cologne "
                 "before it reaches the North Sea near Rotterdam.",
}
BUSY = "an ingest is running (pid "


CITIES = ["Lyon", "Porto", "Graz", "Turku", "Bergen", "Ghent", "Parma", "Brno", "Cork", "Split"]


def long_corpus(root: Path, n: int) -> Path:
    """`n` distinct short letters (varied enough that no cleaning filter drops one)."""
    files = {
        f"letter-{i:03d}.txt":
            f"In {1850 + i} the traveller number {i} walked {3 + i % 17} kilometres from "
            f"{CITIES[i % 10]} to {CITIES[(i * 7 + 3) % 10]}. On day {i % 29 + 1} of the "
            f"journey {i % 5 + 2} letters about the harbour of {CITIES[(i * 3) % 10]} "
            f"were written, and {i % 11 + 1} of them reached the archive."
        for i in range(n)
    }
    return write_corpus(root, files)


def ingest(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([KGRAG, "ingest", *args, "--no-extract", "--json"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout_s: float = 400) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def graph_and_index_chunks() -> tuple[set[str], set[str]]:
    c = Components.from_settings(get_settings())
    try:
        rows = c.graph.read_query("MATCH (ch:Chunk) RETURN ch.id AS id", limit=10_000).rows
        return {str(r["id"]) for r in rows}, set(c.index(CHUNK_INDEX).ids())
    finally:
        c.close()


def chunks_in_graph() -> int:
    c = Components.from_settings(get_settings())
    try:
        return int(c.graph.read_query("MATCH (ch:Chunk) RETURN count(ch) AS n").rows[0]["n"])
    finally:
        c.close()


def test_an_ingest_started_during_another_loses_no_vectors(kgrag_env: Path,
                                                             tmp_path: Path) -> None:
    """The second ingest starts once the first has written chunks (their vectors not
    saved yet); without one writer at a time, one run's index save drops the other's."""
    big = long_corpus(tmp_path / "letters", 200)
    small = write_corpus(tmp_path / "small", OTHER)
    first = ingest(str(big), KGRAG_INGEST_BATCH_DOCS="1",
                   KGRAG_NEAR_DUPLICATE_THRESHOLD="0.99")
    deadline = time.monotonic() + 240
    while chunks_in_graph() == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    second = ingest(str(small))
    code, err = finish(second)
    if code == 2:  # the first was still writing: told so; --wait gets it done after it
        assert BUSY in err and "Traceback" not in err, err
        code, err = finish(ingest(str(small), "--wait"))
    assert code == 0, err
    code, err = finish(first)
    assert code == 0, err

    in_graph, in_index = graph_and_index_chunks()
    assert len(in_graph) >= 200 + len(OTHER)
    assert in_index == in_graph  # every chunk has its vector, none is left over


def test_a_second_writer_exits_2_saying_who_writes_or_waits_with_wait(
        kgrag_env: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    holder = hold_in_another_process(kgrag_env)
    try:
        code, err = finish(ingest(str(corpus)))
        assert code == 2 and f"an ingest is running (pid {holder.pid}, since " in err, err
        assert "--wait" in err and "Traceback" not in err

        waiting = ingest(str(corpus), "--wait")
        time.sleep(5)
        assert waiting.poll() is None, waiting.communicate()
        assert graph_and_index_chunks() == (set(), set())
        holder.kill()  # as if killed -9: the lock goes with it
        code, err = finish(waiting)
        assert code == 0, err
    finally:
        holder.kill()
        holder.wait(10)
    in_graph, in_index = graph_and_index_chunks()
    assert len(in_graph) >= len(CORPUS) and in_index == in_graph
