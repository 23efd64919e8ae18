"""Readers and writers at once, as a team meets them: `kgrag serve` running a schedule, a
CLI ingest of other files and 20 `kgrag ask` calls (four at a time), all on one data dir.

Real parts throughout: a Prefect server, FalkorDB, FAISS, sentence-transformers and the
local GGUF model answering (`--mode rag`). Nothing may fail; every chunk ends with its
vector; every answer asked after the ingest finished has the new document in its
evidence. The counts are printed (bench/README.md reports them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from core.settings import get_settings
from flows.components import CHUNK_INDEX, Components
from tests.app.test_cli_one_writer import long_corpus
from tests.corpus import CORPUS, write_corpus
from tests.flows.test_schedules import _ingested, wait_for
from tests.processes import kill_group, running_prefect_server

pytestmark = [pytest.mark.services, pytest.mark.timeout(1500)]

KGRAG = str(Path(sys.executable).parent / "kgrag")
FRANKLIN = ("Rosalind Franklin was a chemist born in London. Her X-ray photographs showed "
            "the double helix structure of DNA at King's College.")
MENDEL = ("Gregor Mendel was a friar born in Heinzendorf. He bred pea plants in the garden "
          "of the abbey in Brno and found the laws of heredity.")
QUESTION = "Where was Rosalind Franklin born?"
ASKS, AT_ONCE = 20, 4


def run(*args: str, timeout_s: float = 900) -> tuple[int, str, str, float, float]:
    """A kgrag command in its own process: exit code, stdout, stderr, start and end."""
    start = time.monotonic()
    proc = subprocess.run([KGRAG, *args], env=dict(os.environ), capture_output=True,
                          text=True, timeout=timeout_s)
    return proc.returncode, proc.stdout, proc.stderr, start, time.monotonic()


def doc_id_of(name: str) -> str:
    c = Components.from_settings(get_settings())
    try:
        rows = c.graph.read_query("MATCH (d:Document) RETURN d.id AS id, d.source AS source",
                                  limit=10_000).rows
    finally:
        c.close()
    return next(str(r["id"]) for r in rows if Path(str(r["source"])).name == name)


def chunks_and_vectors() -> tuple[set[str], set[str]]:
    c = Components.from_settings(get_settings())
    try:
        return set(c.graph.chunk_ids()), set(c.index(CHUNK_INDEX).ids())
    finally:
        c.close()


def test_serve_cli_ingest_and_twenty_asks_at_once(kgrag_env: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import LOCAL_MODEL

    if not LOCAL_MODEL.exists():
        pytest.skip(f"needs the local model ({LOCAL_MODEL}; `make setup` fetches it)")
    # Short answers and no rectify round keep 20 asks on 2 cores in minutes; the
    # prompts, retrieval and checks are the real ones.
    monkeypatch.setenv("KGRAG_ANSWER_MAX_TOKENS", "96")
    monkeypatch.setenv("KGRAG_VERIFY_MAX_ROUNDS", "0")
    checker = LOCAL_MODEL.parent / "grounding-checker"
    if checker.exists():
        monkeypatch.setenv("KGRAG_CHECKER_PATH", str(checker))
    base = write_corpus(tmp_path / "base", CORPUS)
    code, _, err, _, _ = run("ingest", str(base), "--no-extract", "--json")
    assert code == 0, err

    watched = tmp_path / "watched"
    watched.mkdir()
    other = long_corpus(tmp_path / "other", 80)
    (other / "franklin.txt").write_text(FRANKLIN)

    with running_prefect_server(tmp_path / "prefect-server") as api:
        monkeypatch.setenv("KGRAG_PREFECT_API_URL", api)
        get_settings.cache_clear()
        code, _, err, _, _ = run("schedule", "add", "--source", str(watched), "--interval",
                                 "5", "--no-extract", "--name", "watched")
        assert code == 0, err
        log = tmp_path / "serve.log"
        with open(log, "wb") as fh:
            serve = subprocess.Popen([KGRAG, "serve", "--poll", "1"], env=dict(os.environ),
                                     stdout=fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            (watched / "mendel.txt").write_text(MENDEL)
            with ThreadPoolExecutor(AT_ONCE + 1) as pool:
                # Small batches, a checkpoint after each: the ingest writes for a while.
                ingest = pool.submit(
                    lambda: subprocess.run(
                        [KGRAG, "ingest", str(other), "--no-extract", "--wait", "--json"],
                        env={**os.environ, "KGRAG_INGEST_BATCH_DOCS": "2",
                             "KGRAG_CHECKPOINT_SECONDS": "0"},
                        capture_output=True, text=True, timeout=900))
                ingest_start = time.monotonic()
                with ThreadPoolExecutor(AT_ONCE) as askers:
                    asks = list(askers.map(
                        lambda _: run("ask", QUESTION, "--mode", "rag", "--json"),
                        range(ASKS)))
                done = ingest.result()
                ingest_end = time.monotonic()
            assert done.returncode == 0, done.stderr
            wait_for(lambda: _ingested("mendel.txt"), 180, "the scheduled run")
        except BaseException:
            print(log.read_text(errors="replace")[-6000:])
            raise
        finally:
            kill_group(serve.pid)
            serve.wait(timeout=30)

    answers: list[dict[str, Any]] = []
    for code, out, err, _, _ in asks:
        assert code == 0 and "Traceback" not in err, err[-3000:]
        answers.append(json.loads(out))
    franklin = doc_id_of("franklin.txt")
    after = [a for a, (*_, start, _) in zip(answers, asks, strict=True)
             if start > ingest_end]
    during = sum(1 for *_, start, end in asks if start < ingest_end and end > ingest_start)
    for a in after:  # a reader started after the ingest sees the new document
        assert franklin in {e["doc_id"] for e in a["evidence"]}, a["evidence"]
    if not after:  # every ask overlapped the ingest: ask once more now
        code, out, err, _, _ = run("ask", QUESTION, "--mode", "rag", "--json")
        assert code == 0, err
        assert franklin in {e["doc_id"] for e in json.loads(out)["evidence"]}
    in_graph, in_index = chunks_and_vectors()
    assert len(in_graph) >= len(CORPUS) + 80 + 2
    assert in_index == in_graph  # every chunk has its vector; none is left over
    print(f"concurrency: {ASKS} asks ({AT_ONCE} at a time), {during} served during the CLI "
          f"ingest ({ingest_end - ingest_start:.0f}s), {len(after)} after it; 0 failed; "
          f"{len(in_graph)} chunks, vectors lost 0")
