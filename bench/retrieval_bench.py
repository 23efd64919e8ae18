"""Passage retrieval on HaluEval QA, HippoRAG 2's protocol: dense vs BM25 vs hybrid vs
Personalized PageRank on the zero-LLM mention layer, then answers (ToG, auto, dense RAG).

Corpus: each sampled question's knowledge split into its hop passages (its gold), plus the
passages of `--distractors` other questions. Two disjoint samples of `--n` questions, fixed
seed: settings are chosen on the *tune* sample (`--tune` runs the grid) and reported on the
*report* sample. Everything is ingested through the real flow (no extraction: the mention
layer only) into bench/.cache/retrieval-bench (its own data dir and embedded FalkorDB), so a
re-run skips the ingest (incremental) and answers come from the LLM response cache.

Metrics: Recall@2 and Recall@5 (share of a question's gold passages in the top k,
averaged), paired bootstrap 95% intervals of each retriever minus dense, ms per question;
index build seconds per layer; with `--qa-n N`: answer EM/F1 on `short_answer`, LLM calls,
tokens and seconds per question for dense RAG, ToG and auto on the first N report
questions.

    python bench/retrieval_bench.py --tune                       # grid on the tune sample
    python bench/retrieval_bench.py                              # report sample, retrieval
    python bench/retrieval_bench.py --qa-n 30                    # + answers on 30 questions

Writes bench/out/retrieval_bench.json and .png and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa_bench import (
    CACHE,
    OUT,
    bootstrap,
    build_corpus,
    exact_match,
    f1,
    halueval_qa,
    paragraphs,
)

DATA = CACHE / "retrieval-bench"
#: The local model `make setup` assembles (the reader of the answer modes).
MODEL = Path(__file__).resolve().parent.parent / "data" / "models" / \
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
RETRIEVERS = ("dense", "bm25", "hybrid", "ppr", "ppr, dense seeds")
QA_MODES = {"dense RAG": ("rag", "dense"), "ToG": ("tog", "ppr"), "auto": ("auto", "ppr")}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def samples(n_records: int, n: int, distractors: int, seed: int
            ) -> tuple[list[int], list[int], list[int]]:
    """Disjoint (tune, report, distractor) question indexes, fixed by `seed`."""
    order = list(range(n_records))
    random.Random(seed).shuffle(order)
    return order[:n], order[n:2 * n], order[2 * n:2 * n + distractors]


def text_key(text: str) -> str:
    """What identifies a passage across cleaning: its letters and digits, lower case (an
    exact duplicate of another question's passage is the same passage)."""
    return re.sub(r"\W+", "", unicodedata.normalize("NFKC", text).casefold())


def write_corpus(records: list[dict[str, str]], ids: list[int], path: Path
                 ) -> dict[int, list[str]]:
    """qa_bench's corpus (one JSONL line per hop passage); returns each question's gold
    passages as `text_key`s."""
    build_corpus(records, ids, [], path)
    return {i: [text_key(p) for p in paragraphs(records[i]["knowledge"])] for i in ids}


def configure(data_dir: Path) -> None:
    """kgrag's settings for the bench (before anything reads them)."""
    os.environ.update({
        "KGRAG_CONFIG": str(data_dir / "kgrag.toml"),
        "KGRAG_DATA_DIR": str(data_dir),
        "KGRAG_GRAPH_NAME": "retrievalbench",
        "KGRAG_LLM_MODEL_PATH": str(MODEL),
        "KGRAG_MIN_WORDS": "3",
        "KGRAG_NEAR_DUPLICATE_THRESHOLD": "0.98",  # distinct passages may share a lot
        "KGRAG_QUALITY_FILTER": "false",  # keep passages with dates in parentheses
        "PREFECT_HOME": str(data_dir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })


def ingest(corpus: Path) -> dict[str, Any]:
    from flows.ingest import ingest_corpus

    started = time.perf_counter()
    summary = ingest_corpus([str(corpus)], extract=False)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    return summary


# --------------------------------------------------------------------------- metrics


def recall(found_docs: list[str], gold_docs: set[str], k: int) -> float:
    return len(set(found_docs[:k]) & gold_docs) / len(gold_docs)


def run_retrieval(c: Any, retriever: Any, records: list[dict[str, str]], sample: list[int],
                  gold: dict[int, list[str]]) -> dict[str, Any]:
    doc_of: dict[str, str] = c.__dict__.setdefault("_doc_of", {})  # chunk id -> text key
    rows = []
    for i in sample:
        started = time.perf_counter()
        found = retriever.search(records[i]["question"], 5)
        seconds = time.perf_counter() - started
        missing = [h.chunk_id for h in found.hits if h.chunk_id not in doc_of]
        doc_of.update({ch.id: text_key(ch.text) for ch in c.graph.get_chunks(missing)})
        docs = [doc_of.get(h.chunk_id, "") for h in found.hits]
        want = set(gold[i])
        rows.append({"index": i, "r2": recall(docs, want, 2), "r5": recall(docs, want, 5),
                     "ms": seconds * 1000, "seeds": len(found.seeds),
                     "fallback": bool(found.note)})
    return summarise(rows)


def retriever_named(c: Any, name: str) -> Any:
    """A configured retriever, or "ppr, dense seeds": PageRank as configured but with the
    passages seeded by dense scores alone (HippoRAG 2's way), to show the graph's share."""
    if name != "ppr, dense seeds":
        return c.retriever(name)
    from retrieval.ppr import PageRankRetriever

    p = c.pagerank
    return PageRankRetriever(p.snapshots, p.chunk_index, p.entity_index, p.embedder,
                             p.analyser, p.fact_index, p.s)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = max(1, len(rows))
    return {"n": len(rows),
            "recall@2": round(100 * sum(r["r2"] for r in rows) / n, 2),
            "recall@5": round(100 * sum(r["r5"] for r in rows) / n, 2),
            "ms_median": round(float(np.median([r["ms"] for r in rows])), 1) if rows else 0,
            "fallback": round(sum(r["fallback"] for r in rows) / n, 3),
            "rows": rows}


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b minus a, per question, with bootstrap intervals (points of recall)."""
    out = {}
    for key in ("r2", "r5"):
        d = 100 * np.array([y[key] - x[key] for x, y in zip(a["rows"], b["rows"],
                                                                strict=True)])
        lo, hi = bootstrap(d)
        out[key] = {"mean": round(float(d.mean()), 2), "ci95": [round(lo, 2), round(hi, 2)]}
    return out


# --------------------------------------------------------------------------- tuning


GRID = {
    "passage_weight": [0.05, 0.2, 0.4, 0.6, 0.8],
    "hub_exponent": [0.0, 0.5, 1.0],
    "damping": [0.3, 0.5, 0.7],
    "dense_seeds": [20, 50],
    "link_threshold": [0.7, 0.8],
    "link_candidates": [1, 3],
}


class CachedEmbedder:
    """The embedder with a memo: the grid re-embeds the same questions and spans."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.memo: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            self.memo.update(zip(todo, self.inner.embed(todo), strict=True))
        return np.stack([self.memo[t] for t in texts])


class CachedAnalyser:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.memo: dict[str, Any] = {}

    def analyse(self, texts: list[str]) -> list[Any]:
        for t in texts:
            if t not in self.memo:
                self.memo[t] = self.inner.analyse([t])[0]
        return [self.memo[t] for t in texts]

    def sentences(self, text: str) -> list[str]:
        return self.inner.sentences(text)


def tune(c: Any, records: list[dict[str, str]], sample: list[int],
         gold: dict[int, list[str]]) -> list[dict[str, Any]]:
    """GRID (and dense or hybrid passage seeds) searched on the tune sample; every
    setting tried, best Recall@5 (then @2) first."""
    from dataclasses import replace

    from retrieval.ppr import PageRankRetriever

    base = c.pagerank
    base.snapshots.refresh_seconds = float("inf")  # nothing writes the graph meanwhile
    embedder, analyser = CachedEmbedder(base.embedder), CachedAnalyser(base.analyser)
    bm25 = c.retriever("bm25")
    results: list[dict[str, Any]] = []
    grid: dict[str, list[Any]] = GRID | {"seeds": ["dense", "hybrid"]}
    best: dict[str, Any] = {k: v[0] for k, v in grid.items()}

    def score(params: dict[str, Any]) -> float:
        known = next((r for r in results if r["params"] == params), None)
        if known is None:
            knobs = {k: v for k, v in params.items() if k != "seeds"}
            r = PageRankRetriever(base.snapshots, base.chunk_index, base.entity_index,
                                  embedder, analyser, base.fact_index,
                                  replace(base.s, **knobs),
                                  lexical=bm25 if params["seeds"] == "hybrid" else None)
            res = run_retrieval(c, r, records, sample, gold)
            known = {"params": dict(params), "recall@2": res["recall@2"],
                     "recall@5": res["recall@5"]}
            results.append(known)
            log(f"tune {params}: R@2 {res['recall@2']} R@5 {res['recall@5']}")
        return float(known["recall@5"]) + 0.5 * float(known["recall@2"])

    # Coordinate ascent: each knob in turn over its values, the others held at the best
    # so far; two sweeps (the full grid is hours on two cores).
    for _ in range(2):
        for key, values in grid.items():
            scored = [(score(best | {key: v}), v) for v in values]
            best[key] = max(scored, key=lambda t: t[0])[1]
    return sorted(results, key=lambda r: (-r["recall@5"], -r["recall@2"]))


# --------------------------------------------------------------------------- answers


def run_answers(c: Any, records: list[dict[str, str]], sample: list[int],
                gold: dict[int, list[str]]) -> dict[str, Any]:
    from flows.qa import build_pipeline

    out: dict[str, Any] = {}
    for name, (mode, retriever) in QA_MODES.items():
        settings = c.settings.model_copy(update={"retriever": retriever, "grounding": "off",
                                                 "verify_max_rounds": 0,
                                                 "tog_sufficiency": "heuristic"})
        sub = type(c)(settings)
        sub.__dict__.update({k: v for k, v in c.__dict__.items()
                             if k in ("graph", "embedder", "llm", "_indexes",
                                      "text_analyser")})
        qa = build_pipeline(sub)
        rows = []
        for n, i in enumerate(sample, 1):
            r = records[i]
            a = qa.ask(r["question"], mode)  # type: ignore[arg-type]
            said = a.short_answer or a.answer
            want = set(gold[i])
            rows.append({"index": i, "gold": r["right_answer"], "short_answer": a.short_answer,
                         "answer": a.answer, "mode": a.mode,
                         "em": exact_match(said, r["right_answer"]),
                         "f1": f1(said, r["right_answer"]),
                         "support_recall": len(want & {text_key(e.text) for e in a.evidence})
                         / len(want),
                         "llm_calls": a.cost.llm_calls,
                         "tokens": a.cost.prompt_tokens + a.cost.completion_tokens,
                         "seconds": a.cost.seconds, "paths": len(a.paths)})
            log(f"{name} {n}/{len(sample)}: f1 {rows[-1]['f1']:.2f} calls "
                f"{a.cost.llm_calls} {a.cost.seconds:.1f}s | {said[:60]!r} (gold "
                f"{r['right_answer']!r})")
        keys = ("em", "f1", "support_recall", "llm_calls", "tokens", "seconds")
        out[name] = {k: round(sum(x[k] for x in rows) / max(1, len(rows)), 4) for k in keys}
        out[name]["rows"] = rows
    return out


# --------------------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    lines = ["| retriever | Recall@2 | Recall@5 | R@2 - dense (95% CI) | R@5 - dense (95% CI) "
             "| ms/q (median) | fell back to dense |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["retrieval"].items():
        d = report["vs_dense"].get(name)
        ci = {k: f"{d[k]['mean']:+.1f} ({d[k]['ci95'][0]:+.1f}, {d[k]['ci95'][1]:+.1f})"
              if d else "" for k in ("r2", "r5")}
        lines.append(f"| {name} | {r['recall@2']:.1f} | {r['recall@5']:.1f} | {ci['r2']} | "
                     f"{ci['r5']} | {r['ms_median']:.0f} | {r['fallback']:.0%} |")
    if report.get("answers"):
        lines += ["", "| answers | EM | F1 | support recall | LLM calls/q | tokens/q | s/q |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in report["answers"].items():
            lines.append(f"| {name} | {r['em']:.3f} | {r['f1']:.3f} | "
                         f"{r['support_recall']:.3f} | {r['llm_calls']:.1f} | "
                         f"{r['tokens']:.0f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["retrieval"])
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    for off, key in ((-0.2, "recall@2"), (0.2, "recall@5")):
        vals = [report["retrieval"][n][key] for n in names]
        ax.bar(x + off, vals, 0.4, label=key)
        for xi, v in zip(x + off, vals, strict=True):
            ax.text(xi, v + 0.5, f"{v:.1f}", ha="center", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("passage recall (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"HaluEval QA, {report['sizes']['report_questions']} questions, "
                 f"{report['sizes']['passages']} passages")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="questions per sample (tune, report)")
    ap.add_argument("--distractors", type=int, default=1500,
                    help="other questions whose passages join the corpus")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--tune", action="store_true", help="grid search on the tune sample")
    ap.add_argument("--qa-n", type=int, default=0, help="answer the first N report questions")
    args = ap.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    configure(DATA)
    OUT.mkdir(parents=True, exist_ok=True)
    records = halueval_qa()
    tune_ids, report_ids, distract = samples(len(records), args.n, args.distractors,
                                             args.seed)
    corpus = DATA / "corpus.jsonl"
    gold = write_corpus(records, tune_ids + report_ids + distract, corpus)
    n_passages = sum(len(v) for v in gold.values())
    log(f"corpus: {n_passages} passages of {len(gold)} questions")

    from flows.components import Components

    summary = ingest(corpus)
    log(f"ingest: {summary['new']} new documents, {summary['chunks']} chunks, "
        f"{summary['wall_seconds']}s; stages {summary['stage_seconds']}")
    c = Components()
    try:
        c.graph.ensure_schema() if hasattr(c.graph, "ensure_schema") else None
        started = time.perf_counter()
        c.pagerank.snapshots.get()
        snapshot_seconds = time.perf_counter() - started
        if args.tune:
            ranked = tune(c, records, tune_ids, gold)
            path = OUT / "retrieval_bench_tune.json"
            path.write_text(json.dumps(ranked, indent=1))
            log(f"best on the tune sample: {ranked[0]}; all in {path}")
            return
        report: dict[str, Any] = {
            "sizes": {"tune_questions": len(tune_ids), "report_questions": len(report_ids),
                      "distractor_questions": len(distract), "passages": n_passages,
                      "seed": args.seed},
            "settings": {k: v for k, v in vars(c.pagerank.s).items()},
            "index_build_seconds": {
                "ingest_stages": summary["stage_seconds"],
                "ingest_wall": summary["wall_seconds"],
                "pagerank_snapshot": round(snapshot_seconds, 2),
                "note": "0 for stages skipped because the corpus was ingested by an earlier "
                        "run (incremental); delete bench/.cache/retrieval-bench to redo",
            },
            "retrieval": {}, "vs_dense": {},
        }
        for name in RETRIEVERS:
            report["retrieval"][name] = run_retrieval(c, retriever_named(c, name), records,
                                                      report_ids, gold)
            log(f"{name}: R@2 {report['retrieval'][name]['recall@2']} "
                f"R@5 {report['retrieval'][name]['recall@5']}")
        for name in RETRIEVERS[1:]:
            report["vs_dense"][name] = paired(report["retrieval"]["dense"],
                                              report["retrieval"][name])
        # The retrieval part is kept even if the answers fail or are interrupted.
        (OUT / "retrieval_bench.json").write_text(json.dumps(report, indent=1))
        if args.qa_n:
            report["answers"] = run_answers(c, records, report_ids[: args.qa_n], gold)
    finally:
        c.close()
    (OUT / "retrieval_bench.json").write_text(json.dumps(report, indent=1))
    print(table(report))
    plot(report, OUT / "retrieval_bench.png")


if __name__ == "__main__":
    main()
