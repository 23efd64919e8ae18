"""Local LLM speed: tokens/s of the in-process model with and without a JSON schema.

Runs the embedded default (Qwen2.5-Coder-0.5B-Instruct Q4_K_M via llama-cpp-python) on a
knowledge-graph extraction prompt, one short paragraph per call (different paragraphs, so
every call evaluates its prompt, as ingest does), in three modes, interleaved so that
load from other processes hits each mode alike:

- `free`: no constraint (the model is asked for JSON but may write anything);
- `json`: llama.cpp's generic JSON grammar (`response_format={"type": "json_object"}`);
- `schema`: the entities + triples JSON schema as a grammar (what kgrag's extractor sends).

tokens/s is completion tokens over the call's wall time (prompt evaluation included).
Each mode runs with every thread count of `--threads` (default: 1 and all cores): on a
2-core machine that other processes also load, llama.cpp's threads wait on each other,
and one thread can be several times faster than two.

    python bench/llm_speed.py                      # ~2-4 minutes on 2 cores
    python bench/llm_speed.py --rounds 1 --threads 2

Prints a table; writes bench/out/llm_speed.json and bench/out/llm_speed.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.llm.base import CompletionRequest
from core.llm.local import LlamaCppChatModel
from core.model_files import SPECS, assemble_model
from core.settings import load_settings

OUT = Path(__file__).resolve().parent / "out"
SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
                "required": ["name", "type"],
            },
        },
        "triples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string"},
                    "predicate": {"type": "string"},
                    "object": {"type": "string"},
                },
                "required": ["subject", "predicate", "object"],
            },
        },
    },
    "required": ["entities", "triples"],
}
SYSTEM = (
    "Extract the entities and relation triples of the text as JSON with keys `entities` "
    "(name, type) and `triples` (subject, predicate, object)."
)
TEXTS = [
    "Marie Curie was born in Warsaw. In 1903 she won the Nobel Prize in Physics together "
    "with Pierre Curie and Henri Becquerel.",
    "Ada Lovelace worked with Charles Babbage on the Analytical Engine in London and wrote "
    "the first published algorithm for it.",
    "The Danube flows through Vienna, Bratislava, Budapest and Belgrade before it reaches "
    "the Black Sea in Romania.",
    "Alan Turing studied at King's College, Cambridge, and later worked at Bletchley Park, "
    "where he helped break the Enigma cipher.",
]
MODES = ("free", "json", "schema")


def run_once(model: LlamaCppChatModel, mode: str, text: str, max_tokens: int) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
    start = time.perf_counter()
    if mode == "json":  # generic JSON grammar; kgrag itself always sends a schema
        response = model._loaded().create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0.0,
            response_format={"type": "json_object"},
        )
        usage = response["usage"]
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    else:
        req = CompletionRequest.of(
            messages, json_schema=SCHEMA if mode == "schema" else None, max_tokens=max_tokens
        )
        c = model.complete_blocking(req)
        prompt, completion = c.prompt_tokens, c.completion_tokens
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(completion / seconds, 2),
    }


def summarise(runs: list[dict[str, Any]], threads: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n, mode in ((n, mode) for n in threads for mode in MODES):
        mine = [r for r in runs if r["mode"] == mode and r["threads"] == n]
        rates = [r["tokens_per_s"] for r in mine]
        rows.append({
            "mode": mode,
            "threads": n,
            "calls": len(mine),
            "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in mine), 1),
            "completion_tokens_mean": round(
                statistics.mean(r["completion_tokens"] for r in mine), 1
            ),
            "seconds_per_call_median": round(statistics.median(r["seconds"] for r in mine), 2),
            "tokens_per_s_median": round(statistics.median(rates), 1),
            "tokens_per_s_best": round(max(rates), 1),
        })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'mode':<8}{'threads':>8}{'calls':>6}{'prompt tok':>12}{'compl tok':>11}{'s/call':>9}"
    print(head + f"{'tok/s med':>11}{'tok/s best':>12}")
    for r in rows:
        print(
            f"{r['mode']:<8}{r['threads']:>8}{r['calls']:>6}{r['prompt_tokens_mean']:>12}"
            f"{r['completion_tokens_mean']:>11}{r['seconds_per_call_median']:>9}"
            f"{r['tokens_per_s_median']:>11}{r['tokens_per_s_best']:>12}"
        )


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [f"{r['mode']}\n{r['threads']} thr" for r in rows]
    ax.bar(names, [r["tokens_per_s_median"] for r in rows], color="tab:blue", label="median")
    ax.plot(names, [r["tokens_per_s_best"] for r in rows], "k_", markersize=30, label="best")
    ax.set(ylabel="completion tokens/s", title=title)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(SPECS), default="0.5b")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the texts")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}",
                        help="comma-separated thread counts (default: 1 and all cores)")
    parser.add_argument("--models-dir", type=Path,
                        default=Path(__file__).resolve().parents[1] / "data" / "models")
    args = parser.parse_args()

    path = assemble_model(load_settings(), args.variant, models_dir=args.models_dir)
    threads = sorted({int(t) for t in args.threads.split(",")})
    models = {n: LlamaCppChatModel(path, n_ctx=2048, n_threads=n) for n in threads}
    start = time.perf_counter()
    for model in models.values():
        model._loaded()  # the GGUF is mmapped: the second load shares its pages
        run_once(model, "free", "Warm-up.", 8)
    load_s = time.perf_counter() - start

    load_before = os.getloadavg()
    runs = []
    for round_ in range(args.rounds):
        for i, text in enumerate(TEXTS):
            # rotate the mode order so no mode always follows another
            for mode in MODES[i % 3:] + MODES[: i % 3]:
                for n, model in models.items():
                    run = run_once(model, mode, text, args.max_tokens) | {"threads": n}
                    runs.append(run)
                    print(f"  round {round_ + 1} text {i + 1} {mode:<7}{n:>2} threads"
                          f"{run['seconds']:>8.2f} s{run['tokens_per_s']:>8.1f} tok/s",
                          flush=True)
    rows = summarise(runs, threads)
    print_table(rows)

    OUT.mkdir(parents=True, exist_ok=True)
    spec = SPECS[args.variant]
    report = {
        "model": spec.name,
        "model_file": {"size": spec.size, "sha256": spec.sha256},
        "load_and_warmup_seconds": round(load_s, 2),
        "max_tokens": args.max_tokens,
        "threads": threads,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "rows": rows,
        "runs": runs,
    }
    (OUT / "llm_speed.json").write_text(json.dumps(report, indent=2))
    plot(rows, OUT / "llm_speed.png", f"{spec.name}, {os.cpu_count()} cpus")
    print(f"wrote {OUT / 'llm_speed.json'}")


if __name__ == "__main__":
    main()
