"""FAISS benchmark: the approximate index kgrag builds (IVF) against exact flat search.

For each size it builds, side by side in one process, the exact index and the IVF index
exactly as `retrieval.index.FaissVectorIndex` builds them (IVF forced at every size, with
its own nprobe tuning), plus a raw faiss `IndexHNSWFlat` (M=32, efSearch tuned) as the
alternative that was not chosen. It then measures, on the same queries:

- batch queries/s: all queries in one `search` call (best of `--repeats`, runs interleaved
  across indexes so that load from other processes hits each index alike);
- single-query queries/s: one query per call, for up to `--single-seconds` per index, with
  `--single-threads` OpenMP threads (default 1: on a busy 2-core machine faiss's OpenMP
  split of one query over the stored vectors measures contention, not the index: exact
  search over 10k vectors did about 3,800 queries/s with 1 thread and 330 with 2);
- recall@10 against the exact index's results.

Data: synthetic 384-d vectors from a clustered mixture (see `ClusteredVectors`), not
uniform noise; queries are fresh draws from the same mixture, not stored vectors.

    python bench/faiss_bench.py --sizes 10000,100000          # a few minutes
    python bench/faiss_bench.py --sizes 1000000 --no-hnsw     # IVF and flat only

Prints a table; merges its rows into bench/out/faiss.json (rows of other sizes are kept)
and draws bench/out/faiss.png.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from retrieval.index import FaissVectorIndex

DIM = 384
K = 10
TARGET_RECALL = 0.95
HNSW_TUNE_RECALL = 0.97  # same margin as FaissVectorIndex's nprobe tuning
OUT = Path(__file__).resolve().parent / "out"


class ClusteredVectors:
    """A Gaussian mixture with low intrinsic dimension, like text embeddings.

    `clusters` topics with log-normal sizes; each topic is a random unit centre plus a
    `latent`-dim random subspace of its own (total spread `spread`), plus isotropic noise
    of norm about `noise`; then L2-normalised. With the defaults a query's nearest stored
    vector has cosine about 0.72 and its 10th about 0.62 at 100k vectors.
    """

    def __init__(
        self,
        clusters: int = 1024,
        latent: int = 24,
        spread: float = 1.0,
        noise: float = 0.4,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.centres = _normalised(rng.standard_normal((clusters, DIM), dtype=np.float32))
        bases = rng.standard_normal((clusters, latent, DIM), dtype=np.float32)
        self.bases = bases / np.linalg.norm(bases, axis=2, keepdims=True) * spread / latent**0.5
        weights = rng.lognormal(0.0, 1.0, clusters)
        self.weights = weights / weights.sum()
        self.noise = noise
        self.params = {"clusters": clusters, "latent": latent, "spread": spread, "noise": noise}

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            topic = rng.choice(len(self.centres), size=m, p=self.weights)
            x = self.centres[topic]
            z = rng.standard_normal((m, self.bases.shape[1]), dtype=np.float32)
            for t in np.unique(topic):
                rows = np.flatnonzero(topic == t)
                x[rows] += z[rows] @ self.bases[t]
            x += rng.standard_normal((m, DIM), dtype=np.float32) * (self.noise / DIM**0.5)
            out[start : start + m] = _normalised(x)
        return out


@dataclass
class Row:
    size: int
    index: str
    params: str
    build_s: float
    batch_qps: float
    single_qps: float
    single_queries: int
    recall_at_10: float
    batch_speedup: float = 1.0
    single_speedup: float = 1.0


SearchFn = Callable[[np.ndarray], np.ndarray]  # queries -> (n, K) int positions, -1 padded


def main() -> None:
    args = parse_args()
    mixture = ClusteredVectors()
    queries = mixture.sample(args.queries, seed=1)
    tune_queries = mixture.sample(200, seed=2)
    print(
        f"faiss {faiss.__version__}, {os.cpu_count()} cpus, {faiss.get_num_gpus()} gpus; "
        f"{args.queries} queries, k={K}",
        flush=True,
    )
    rows: list[Row] = []
    for size in args.sizes:
        rows += bench_size(size, mixture, queries, tune_queries, args)
        print_table(rows)
        write_outputs(rows, mixture, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
        help="comma-separated numbers of stored vectors (default 10000,100000,1000000)",
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="batch timings, best kept")
    parser.add_argument("--single-seconds", type=float, default=15.0)
    parser.add_argument(
        "--single-threads",
        type=int,
        default=1,
        help="OpenMP threads for single-query timings (0: faiss default)",
    )
    parser.add_argument("--no-hnsw", action="store_true", help="skip the HNSW reference")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    return parser.parse_args()


def bench_size(
    size: int,
    mixture: ClusteredVectors,
    queries: np.ndarray,
    tune_queries: np.ndarray,
    args: argparse.Namespace,
) -> list[Row]:
    print(f"\n== {size:,} vectors", flush=True)
    t = time.perf_counter()
    base = mixture.sample(size, seed=1000 + size)
    keys = [str(i) for i in range(size)]
    print(f"generated in {time.perf_counter() - t:.1f}s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        flat = FaissVectorIndex(
            Path(tmp, "flat"), DIM, "synthetic", approx_threshold=size, device=args.device
        )
        flat_build = timed(flat.add, keys, base)
        ivf = FaissVectorIndex(
            Path(tmp, "ivf"), DIM, "synthetic", approx_threshold=0, device=args.device
        )
        ivf_build = timed(ivf.add, keys, base)
        nlist = ivf.nlist
        print(
            f"flat built in {flat_build:.1f}s; ivf in {ivf_build:.1f}s "
            f"(nlist {nlist}, nprobe {ivf.nprobe})",
            flush=True,
        )
        contenders: dict[str, tuple[str, float, SearchFn]] = {
            "flat": ("exact", flat_build, positions_of(flat)),
            "ivf": (f"nlist={nlist} nprobe={ivf.nprobe}", ivf_build, positions_of(ivf)),
        }
        truth = contenders["flat"][2](queries)
        if not args.no_hnsw:
            hnsw_params, hnsw_build, hnsw_search = build_hnsw(base, tune_queries, flat)
            print(f"hnsw built in {hnsw_build:.1f}s ({hnsw_params})", flush=True)
            contenders["hnsw"] = (hnsw_params, hnsw_build, hnsw_search)
        del base
        gc.collect()
        rows = measure(size, contenders, queries, truth, args)
    gc.collect()
    return rows


def measure(
    size: int,
    contenders: dict[str, tuple[str, float, SearchFn]],
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> list[Row]:
    batch = {name: float("inf") for name in contenders}
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every index alike
        for name, (_, _, search) in contenders.items():
            batch[name] = min(batch[name], timed(search, queries))
    rows = []
    for name, (params, build_s, search) in contenders.items():
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(args.single_threads or threads)
        single_qps, single_n = time_single(search, queries, args.single_seconds)
        faiss.omp_set_num_threads(threads)
        rows.append(
            Row(
                size=size,
                index=name,
                params=params,
                build_s=round(build_s, 2),
                batch_qps=round(len(queries) / batch[name], 1),
                single_qps=round(single_qps, 1),
                single_queries=single_n,
                recall_at_10=round(recall_at_k(search(queries), truth), 4),
            )
        )
        print(
            f"{name}: batch {rows[-1].batch_qps:,.0f} q/s, single {single_qps:,.0f} q/s, "
            f"recall@10 {rows[-1].recall_at_10:.4f}",
            flush=True,
        )
    flat = rows[0]
    for row in rows:
        row.batch_speedup = round(row.batch_qps / flat.batch_qps, 2)
        row.single_speedup = round(row.single_qps / flat.single_qps, 2)
    return rows


def positions_of(index: FaissVectorIndex) -> SearchFn:
    """Search through the product API (string ids, Hit objects), as callers will."""

    def search(queries: np.ndarray) -> np.ndarray:
        out = np.full((len(queries), K), -1, dtype=np.int64)
        for row, hits in enumerate(index.search(queries, K)):
            out[row, : len(hits)] = [int(hit.id) for hit in hits]
        return out

    return search


def build_hnsw(
    base: np.ndarray, tune_queries: np.ndarray, flat: FaissVectorIndex
) -> tuple[str, float, SearchFn]:
    """IndexHNSWFlat, M=32, with the smallest efSearch reaching HNSW_TUNE_RECALL."""
    hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    build_s = timed(hnsw.add, base)
    tune_truth = positions_of(flat)(tune_queries)
    for ef in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512):
        hnsw.hnsw.efSearch = ef
        if recall_at_k(hnsw.search(tune_queries, K)[1], tune_truth) >= HNSW_TUNE_RECALL:
            break

    def search(queries: np.ndarray) -> np.ndarray:
        # raw faiss: no string ids or Hit objects, a small advantage over the other two
        return np.asarray(hnsw.search(queries, K)[1])

    return f"M=32 efSearch={hnsw.hnsw.efSearch}", build_s, search


def time_single(search: SearchFn, queries: np.ndarray, budget_s: float) -> tuple[float, int]:
    start = time.perf_counter()
    n = 0
    for n, query in enumerate(queries, start=1):  # noqa: B007 (n is the count afterwards)
        search(query[None, :])
        if time.perf_counter() - start > budget_s:
            break
    return n / (time.perf_counter() - start), n


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _normalised(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'size':>10} {'index':<5} {'params':<24} {'build s':>8} {'batch q/s':>10} "
        f"{'x flat':>7} {'single q/s':>10} {'x flat':>7} {'recall@10':>9}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r.size:>10,} {r.index:<5} {r.params:<24} {r.build_s:>8.1f} {r.batch_qps:>10,.0f} "
            f"{r.batch_speedup:>7.1f} {r.single_qps:>10,.0f} {r.single_speedup:>7.1f} "
            f"{r.recall_at_10:>9.4f}"
        )
    print(flush=True)


def write_outputs(rows: list[Row], mixture: ClusteredVectors, args: argparse.Namespace) -> None:
    """Merge this run's rows into faiss.json (other sizes' rows kept) and redraw the plot."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "faiss.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    sizes = {r.size for r in rows}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    merged = [r for r in old if r["size"] not in sizes] + [asdict(r) | {"run": stamp} for r in rows]
    merged.sort(key=lambda r: (r["size"], ["flat", "ivf", "hnsw"].index(r["index"])))
    report = {
        "data": {
            "kind": "clustered gaussian mixture, L2-normalised",
            "dimension": DIM,
            **mixture.params,
        },
        "queries": args.queries,
        "k": K,
        "target": {"recall_at_10": TARGET_RECALL, "batch_speedup_at_1M": 5.0},
        "machine": {
            "cpus": os.cpu_count(),
            "gpus": faiss.get_num_gpus(),
            "faiss": faiss.__version__,
            "python": platform.python_version(),
        },
        "rows": merged,
    }
    path.write_text(json.dumps(report, indent=2))
    plot(merged, OUT / "faiss.png")


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_qps, ax_recall) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, colour in (("flat", "tab:gray"), ("ivf", "tab:blue"), ("hnsw", "tab:orange")):
        mine = [r for r in rows if r["index"] == name]
        if not mine:
            continue
        sizes = [r["size"] for r in mine]
        ax_qps.plot(
            sizes, [r["batch_qps"] for r in mine], "o-", color=colour, label=f"{name} batch"
        )
        ax_qps.plot(
            sizes, [r["single_qps"] for r in mine], "s--", color=colour, label=f"{name} single"
        )
        ax_recall.plot(sizes, [r["recall_at_10"] for r in mine], "o-", color=colour, label=name)
    ax_qps.set(
        xscale="log",
        yscale="log",
        xlabel="stored vectors",
        ylabel="queries/s",
        title=f"{DIM}-d, {os.cpu_count()} cpus",
    )
    ax_recall.axhline(TARGET_RECALL, color="red", linestyle=":", label="target")
    ax_recall.set(
        xscale="log",
        xlabel="stored vectors",
        ylabel="recall@10 vs exact",
        title="recall@10",
        ylim=(0.8, 1.005),
    )
    for ax in (ax_qps, ax_recall):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
