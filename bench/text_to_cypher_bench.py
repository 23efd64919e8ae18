"""Text-to-Cypher: execution accuracy of the local model's queries on the sample graph.

The graph is the one `make demo` builds: `ingest/samples` (six short biographies)
ingested with the default settings (spaCy mention layer + LLM extraction) into the
benchmark's own data dir and graph (bench/.cache/text-to-cypher/, graph `t2cbench`),
with the GGUF of data/models used in place. An existing graph with the six documents is
reused, so only the first run pays the ingest (about 2-3 minutes on 2 cores);
`--reingest` runs the (incremental) ingest again.

Questions: bench/data/cypher_questions.jsonl, 30 questions with the gold Cypher that
answers them on this graph and its expected rows (`--write-gold` recomputes those from
the gold queries; the gold queries are re-run every time and a mismatch is reported as
drift, e.g. after an extraction change). Each question goes through
`CypherQueryWriter` (schema prompt, one retry on a failed or empty trial run), then the
written query runs through the store's read-only path (`read_query`), as `kgrag cypher
--ask --yes` does.

Scores, over all questions:
- execution accuracy (EX): the rows equal the expected rows, compared as sets of rows,
  each row the multiset of its normalised values (strings casefolded, 8.0 == 8; column
  names and order ignored), as lists when the question asks for an order;
- EX, extra columns allowed: as many rows as expected, each expected row's values found
  in one returned row (the query answered and added, e.g., a count column);
- invalid: the final query still failed (syntax, unknown label/type/property, no query);
  refused: it would write (the read-only path refuses it before the engine).
Seconds per question are wall time: writing (model calls + trial run) and running.

    python bench/text_to_cypher_bench.py                  # ~5-15 min on 2 busy cores
    python bench/text_to_cypher_bench.py --limit 5 --threads 1

Prints a table; writes bench/out/text_to_cypher.json and bench/out/text_to_cypher.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO / "bench" / ".cache" / "text-to-cypher"
QUESTIONS = REPO / "bench" / "data" / "cypher_questions.jsonl"
SAMPLES = REPO / "ingest" / "samples"
MODEL = REPO / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
OUT = REPO / "bench" / "out"


def configure(threads: int | None) -> None:
    """The benchmark's own data dir and graph (before any kgrag settings are read)."""
    os.environ.update({
        "KGRAG_CONFIG": str(DATA / "kgrag.toml"),
        "KGRAG_DATA_DIR": str(DATA),
        "KGRAG_GRAPH_NAME": "t2cbench",
        "KGRAG_LLM_MODEL_PATH": str(MODEL),
        "PREFECT_HOME": str(DATA / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    if threads:
        os.environ["KGRAG_LLM_THREADS"] = str(threads)


def ensure_graph(store: Any, reingest: bool) -> None:
    """Ingest the samples unless the graph already holds all of them."""
    done = len(store.document_hashes())
    if done >= len(list(SAMPLES.glob("*.md"))) and not reingest:
        print(f"reusing the graph ({done} documents)")
        return
    from flows.ingest import ingest_corpus

    start = time.perf_counter()
    summary = ingest_corpus([str(SAMPLES)])
    print(f"ingested in {time.perf_counter() - start:.0f} s: {summary['new']} new, "
          f"{summary['relations_kept']} facts, failed: {summary['failed']}")


# --------------------------------------------------------------------------- scoring


def norm(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | dict):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "" if value is None else " ".join(str(value).casefold().split())


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(norm(v) for v in row.values()))


def same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]], ordered: bool) -> bool:
    if ordered:
        return [row_key(r) for r in got] == [row_key(r) for r in want]
    return set(map(row_key, got)) == set(map(row_key, want))


def rows_within(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    """As many distinct rows as expected, each expected row's values in a returned row."""
    got_rows = [Counter(row_key(r)) for r in {row_key(r): r for r in got}.values()]
    want_rows = [Counter(k) for k in set(map(row_key, want))]
    if len(got_rows) != len(want_rows):
        return False
    return all(any(not (w - g) for g in got_rows) for w in want_rows)


# --------------------------------------------------------------------------- run


def load_questions(limit: int | None) -> list[dict[str, Any]]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()][:limit]


def write_gold(store: Any) -> None:
    questions = load_questions(None)
    for q in questions:
        q["expected"] = store.read_query(q["gold"]).to_json()
    QUESTIONS.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions),
                         encoding="utf-8")
    print(f"wrote the expected rows of {len(questions)} questions to {QUESTIONS}")


def ask_one(writer: Any, store: Any, q: dict[str, Any]) -> dict[str, Any]:
    from core.errors import KgragError

    start = time.perf_counter()
    draft = writer.write(q["question"])
    rows: list[dict[str, Any]] = []
    error = draft.error
    if error is None:
        try:
            rows = store.read_query(draft.query).rows
        except KgragError as exc:
            error = exc.message
    seconds = time.perf_counter() - start
    want = q["expected"]["rows"]
    if draft.refused:
        verdict = "refused"
    elif error is not None:
        verdict = "invalid"
    elif same_rows(rows, want, q.get("ordered", False)):
        verdict = "correct"
    else:
        verdict = "wrong"
    lenient = verdict == "correct" or (verdict == "wrong" and rows_within(rows, want))
    return {"id": q["id"], "kind": q["kind"], "question": q["question"],
            "query": draft.query, "attempts": draft.attempts, "error": error,
            "verdict": verdict, "correct_extra_columns_ok": lenient,
            "rows": rows[:20], "seconds": round(seconds, 2)}


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    def part(rs: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rs)
        count = Counter(r["verdict"] for r in rs)
        return {"n": n,
                "execution_accuracy": round(count["correct"] / n, 3) if n else 0.0,
                "execution_accuracy_extra_columns_ok": round(
                    sum(r["correct_extra_columns_ok"] for r in rs) / n, 3) if n else 0.0,
                "correct": count["correct"], "wrong": count["wrong"],
                "invalid": count["invalid"], "refused": count["refused"],
                "retried": sum(r["attempts"] > 1 for r in rs),
                "seconds_per_question_mean": round(
                    statistics.mean(r["seconds"] for r in rs), 2) if n else 0.0,
                "seconds_per_question_median": round(
                    statistics.median(r["seconds"] for r in rs), 2) if n else 0.0}

    kinds = sorted({r["kind"] for r in results})
    return {"all": part(results)} | {k: part([r for r in results if r["kind"] == k])
                                     for k in kinds}


def print_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"\n{'id':<5}{'kind':<11}{'verdict':<9}{'lenient':>8}{'tries':>6}{'s':>7}  question")
    for r in results:
        print(f"{r['id']:<5}{r['kind']:<11}{r['verdict']:<9}"
              f"{'yes' if r['correct_extra_columns_ok'] else 'no':>8}{r['attempts']:>6}"
              f"{r['seconds']:>7.1f}  {r['question']}")
    print(f"\n{'questions':<11}{'n':>4}{'EX':>7}{'EX+cols':>9}{'invalid':>9}{'refused':>9}"
          f"{'retried':>9}{'s/q mean':>10}{'s/q med':>9}")
    for name, s in summary.items():
        print(f"{name:<11}{s['n']:>4}{s['execution_accuracy']:>7.2f}"
              f"{s['execution_accuracy_extra_columns_ok']:>9.2f}{s['invalid']:>9}"
              f"{s['refused']:>9}{s['retried']:>9}{s['seconds_per_question_mean']:>10.1f}"
              f"{s['seconds_per_question_median']:>9.1f}")


def plot(summary: dict[str, Any], results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(summary)
    bottom = [0.0] * len(names)
    colours = {"correct": "tab:green", "wrong": "tab:orange", "invalid": "tab:red",
               "refused": "black"}
    for verdict, colour in colours.items():
        values = [summary[n][verdict] / summary[n]["n"] for n in names]
        left.bar(names, values, bottom=bottom, color=colour, label=verdict)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    left.set(ylabel="share of questions", title="Text-to-Cypher verdicts, by question kind")
    left.legend(fontsize=8)
    right.hist([r["seconds"] for r in results], bins=15, color="tab:blue")
    right.set(xlabel="seconds per question", ylabel="questions", title="Latency")
    for ax in (left, right):
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: setting)")
    parser.add_argument("--reingest", action="store_true", help="run the ingest again")
    parser.add_argument("--write-gold", action="store_true",
                        help="recompute the expected rows from the gold queries and stop")
    args = parser.parse_args()
    configure(args.threads)

    from core.settings import get_settings
    from flows.components import Components
    from retrieval.text_to_cypher import CypherQueryWriter

    # No response cache: the seconds per question are part of the result.
    c = Components.from_settings(get_settings().model_copy(update={"llm_cache": False}))
    try:
        ensure_graph(c.graph, args.reingest)
        if args.write_gold:
            write_gold(c.graph)
            return
        questions = load_questions(args.limit)
        drift = [q["id"] for q in questions
                 if not same_rows(c.graph.read_query(q["gold"]).rows, q["expected"]["rows"],
                                  q.get("ordered", False))]
        if drift:
            print(f"warning: the graph no longer gives the expected rows of {drift}")
        writer = CypherQueryWriter(c.llm, c.graph)
        start = time.perf_counter()
        writer.write("How many documents are there?")  # warm-up: load, prompt prefix
        warmup_s = time.perf_counter() - start
        results = []
        for q in questions:
            results.append(ask_one(writer, c.graph, q))
            r = results[-1]
            print(f"  {r['id']} {r['verdict']:<8}{r['seconds']:>6.1f} s  {r['query']!r}",
                  flush=True)
    finally:
        c.close()
    summary = summarise(results)
    print_table(results, summary)
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"model": MODEL.name, "threads": args.threads, "warmup_seconds": round(warmup_s, 2),
              "gold_drift": drift, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
              "schema": writer.schema.text, "summary": summary, "results": results}
    (OUT / "text_to_cypher.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot(summary, results, OUT / "text_to_cypher.png")
    print(f"wrote {OUT / 'text_to_cypher.json'} and {OUT / 'text_to_cypher.png'}")


if __name__ == "__main__":
    main()
