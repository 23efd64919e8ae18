"""Extraction quality and cost: kgrag's one-call `ChunkExtractor` (in each output format of
`--formats`: lines, json) against a LightRAG-style baseline (extraction + one gleaning
pass, same model), on WebNLG text with gold triples; plus the triple judges' AUROC against
the match labels (GroundingJudge, and CheckerJudge when a trained checker exists).

Data: BIG-bench `gem/webnlg_en` (see `bench/webnlg.py`), records with an even index only
(odd ones are held out); each record's first reference text is one chunk, its DBpedia
triples the gold. Both extractors run on the same local GGUF model, one record after the
other (the order alternates, so load from other processes hits both alike).

Soft match. Strings are normalised: NFKC, camelCase split (`birthPlace` -> `birth place`),
casefolded, underscores and punctuation to spaces, spaces squashed. A predicted triple
matches a gold triple when subject, predicate and object EACH match: equal after
normalisation, or (soft) cosine >= `--sim` (0.8) between all-MiniLM-L6-v2 embeddings of
the normalised strings. Matching is one-to-one (maximum bipartite matching per record), so
a repeated prediction cannot match one gold triple twice. Precision = matched / predicted,
recall = matched / gold, micro-averaged over records. Three variants are reported:
`strict` (normalised equality only), `soft` (the above) and `pair` (subject and object
soft-match, predicate ignored: WebNLG's DBpedia property names are hard to guess from text,
so this shows whether the facts' ends were found). The baseline's relation label is its
`relationship_keywords` field: a baseline predicate matches when the whole field or any of
its comma-separated keywords matches (its description when it gave no keywords).
Entity recall: share of gold subjects/objects matched by a predicted entity name or triple
end (strict and soft). 95% intervals come from a bootstrap over records.

Cost: model calls (every attempt, retries included), prompt + completion tokens and
seconds per chunk. Replies are cached under `bench/.cache/extract/` (llm_cache), so a
re-run costs nothing; the calls of each record's first, uncached run are kept in
`bench/.cache/extract/first_run.json` and those are what the cost columns report.

Each extractor has its own llama.cpp context (one loaded model each; the GGUF is mmapped
and shared), as a sequential ingest would: a context reuses the KV cache of the prompt
prefix it saw last, and both extractors repeat their instructions and example every chunk.

Judge: kgrag's triples scored by `kg.judge.GroundingJudge` (no LLM call) and cut at each
threshold of `--thresholds` (0.7 is the setting's default): precision gained, recall lost
against the judge off.

    python bench/extract_bench.py --n 40 --formats json,lines --no-baseline   # both formats
    python bench/extract_bench.py --n 10                  # ~10-15 min uncached, 2 busy cores
    python bench/extract_bench.py --n 40                  # ~35-60 min uncached; cached: 20 s
    python bench/extract_bench.py --n 20 --variant 1.5b   # Qwen2.5-Coder-1.5B, ~20 min

Prints tables; writes bench/out/extract.json and bench/out/extract.png (`extract-<variant>`
for a variant other than 0.5b).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.lightrag_baseline import (
    EXAMPLE,
    LightRAGExtraction,
    LightRAGExtractor,
    parse_records,
)
from bench.webnlg import WebNLGRecord, webnlg_records
from core.embed import SentenceTransformerEmbedder
from core.llm.base import ChatModel, ChatModelLayer, Completion, CompletionRequest
from core.llm.cache import CachedChatModel
from core.llm.factory import make_backend, make_chat_model
from core.model_files import SPECS, assemble_model
from core.models import Chunk
from core.settings import Settings, load_settings
from kg.extract import ChunkContext, ChunkExtraction, ChunkExtractor
from kg.judge import CheckerJudge, GroundingJudge
from kg.scoring import (
    Counts,
    Predicted,
    SoftMatcher,
    found_entities,
    matched_triples,
    normalise,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
CACHE = ROOT / "bench" / ".cache" / "extract"
KGRAG, BASELINE = "kgrag", "lightrag"


# --- running the extractors -----------------------------------------------------------


class CallRecorder(ChatModelLayer):
    """Innermost layer: each request that reaches the model, with its tokens and time
    (cache hits never get here; retries do)."""

    def __init__(self, inner: ChatModel) -> None:
        super().__init__(inner)
        self.calls: list[dict[str, Any]] = []

    async def acomplete(self, request: CompletionRequest) -> Completion:
        start = time.perf_counter()
        try:
            result = await self.inner.acomplete(request)
        except Exception as exc:
            self.calls.append({"prompt_tokens": 0, "completion_tokens": 0,
                               "seconds": round(time.perf_counter() - start, 3),
                               "finish_reason": f"error: {type(exc).__name__}"})
            raise
        self.calls.append({"prompt_tokens": result.prompt_tokens,
                           "completion_tokens": result.completion_tokens,
                           "seconds": round(time.perf_counter() - start, 3),
                           "finish_reason": result.finish_reason,
                           "load1": round(os.getloadavg()[0], 2)})  # other jobs' share
        return result


@dataclass
class RecordRun:
    """One extractor's output on one record, and what it cost on its first run."""

    index: int
    extractor: str
    triples: list[Predicted]
    entities: list[str]
    calls: list[dict[str, Any]]
    cached: bool = False
    error: str | None = None
    judge_scores: list[float] = field(default_factory=list)  # GroundingJudge
    checker_scores: list[float] = field(default_factory=list)  # CheckerJudge
    drops: dict[str, int] = field(default_factory=dict)
    first_pass_triples: list[Predicted] = field(default_factory=list)  # baseline only
    malformed: int = 0
    completed: list[bool] = field(default_factory=list)
    example_leak: bool = False
    raw: list[str] = field(default_factory=list)


class FirstRunLog:
    """The model calls of each record's first (uncached) run, kept across runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, list[dict[str, Any]]] = (
            json.loads(path.read_text()) if path.is_file() else {})

    def resolve(self, key: str, fresh: list[dict[str, Any]], any_cached: bool,
                ) -> list[dict[str, Any]]:
        if fresh and not any_cached:
            self.data[key] = fresh
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))
            return fresh
        return self.data.get(key, fresh)


def chunk_of(record: WebNLGRecord) -> Chunk:
    doc_id = f"webnlg-{record.index}"
    return Chunk(id=Chunk.make_id(doc_id, 0, record.text), doc_id=doc_id, text=record.text,
                 start=0, end=len(record.text), position=0)


def baseline_triples(extraction: LightRAGExtraction) -> list[Predicted]:
    out = []
    for r in extraction.relations:
        labels = [k.strip() for k in r.keywords.split(",") if k.strip()]
        labels = [r.keywords, *labels] if labels else [r.description]
        out.append(Predicted(r.source, tuple(labels), r.target))
    return out


_EXAMPLE_NAMES = ("noah carter", "world athletics", "carbon fiber spikes")


def leaks_example(texts: Sequence[str], chunk_text: str) -> bool:
    """The reply repeats the few-shot example's entities that the chunk does not have."""
    said, source = normalise(" ".join(texts)), normalise(chunk_text)
    return any(n in said and n not in source for n in _EXAMPLE_NAMES)


def cached_text(llm: ChatModel, request: CompletionRequest) -> str:
    """The validated reply the LLM cache holds for `request` ("" if none: a failed chunk)."""
    layer: Any = llm
    while layer is not None and not isinstance(layer, CachedChatModel):
        layer = getattr(layer, "inner", None)
    hit = layer.store.get(layer.key(request)) if layer is not None else None
    return hit.text if hit is not None else ""


class Runner:
    """kgrag's extractor in each output format and the baseline over one shared model,
    with per-extractor call records."""

    def __init__(self, settings: Settings, embedder: SentenceTransformerEmbedder,
                 model_name: str, formats: Sequence[str], checker: Any = None) -> None:
        # One llama.cpp context each: a context reuses the KV cache of the prompt prefix it
        # saw last, and each extractor repeats its own instructions + example every chunk.
        self.names = [f"{KGRAG}-{f}" for f in formats]
        self.recorders = {name: CallRecorder(make_backend(settings))
                          for name in [*self.names, BASELINE]}
        self.extractors = {f"{KGRAG}-{f}": ChunkExtractor(
            make_chat_model(settings, self.recorders[f"{KGRAG}-{f}"]), output=f)
            for f in formats}
        self.baseline = LightRAGExtractor(make_chat_model(settings, self.recorders[BASELINE]))
        self.judges: dict[str, Any] = {"grounding": GroundingJudge(embedder.embed, threshold=0.0)}
        if checker is not None:
            self.judges["checker"] = CheckerJudge(checker, threshold=0.0)
        self.log = FirstRunLog(CACHE / "first_run.json")
        self.model_name = model_name

    def _calls(self, name: str, index: int, before: int, any_cached: bool,
               ) -> list[dict[str, Any]]:
        fresh = self.recorders[name].calls[before:]
        # the json format's log keeps its old key, so earlier first runs still count
        key = KGRAG if name == f"{KGRAG}-json" else name
        return self.log.resolve(f"{self.model_name}|{key}|{index}", fresh, any_cached)

    def run_kgrag(self, record: WebNLGRecord, name: str) -> RecordRun:
        chunk, before = chunk_of(record), len(self.recorders[name].calls)
        extractor = self.extractors[name]
        result: ChunkExtraction = extractor.run([ChunkContext(chunk)])[0]
        names = {e.id: e.name for e in result.entities}
        triples = [Predicted(names[r.subject_id], (r.predicate,), names[r.object_id])
                   for r in result.relations]
        scores = {j: ([round(float(x), 4) for x in judge_.score(chunk, result.relations, names)]
                      if result.relations else [])
                  for j, judge_ in self.judges.items()}
        raw = cached_text(extractor.llm, extractor.request(ChunkContext(chunk)))
        return RecordRun(record.index, name, triples, list(names.values()),
                         self._calls(name, record.index, before, result.cached),
                         cached=result.cached, error=result.error,
                         judge_scores=scores["grounding"], checker_scores=scores.get("checker", []),
                         drops=result.drops, raw=[raw] if raw else [])

    def run_baseline(self, record: WebNLGRecord) -> RecordRun:
        before = len(self.recorders[BASELINE].calls)
        ex = self.baseline.run(record.text)
        any_cached = any(r.cached for r in ex.replies)
        first = LightRAGExtraction()
        if ex.replies:
            parsed = parse_records(ex.replies[0].text)
            first.relations = parsed.relations
        names = [e.name for e in ex.entities]
        names += [x for r in ex.relations for x in (r.source, r.target)]
        texts = [r.text for r in ex.replies]
        return RecordRun(record.index, BASELINE, baseline_triples(ex), names,
                         self._calls(BASELINE, record.index, before, any_cached),
                         cached=any_cached, error=ex.error,
                         first_pass_triples=baseline_triples(first), malformed=ex.malformed,
                         completed=ex.completed, example_leak=leaks_example(texts, record.text),
                         raw=texts)


# --- scoring --------------------------------------------------------------------------


def score_triples(runs: Sequence[RecordRun], records: dict[int, WebNLGRecord],
                  m: SoftMatcher, pick: Callable[[RecordRun], list[Predicted]],
                  ) -> dict[str, Counts]:
    out = {mode: Counts() for mode in ("strict", "soft", "pair")}
    for run in runs:
        gold, pred = records[run.index].triples, pick(run)
        for mode, counts in out.items():
            counts.add(len(pred), len(gold), matched_triples(pred, gold, m, mode))
    return out


def score_entities(runs: Sequence[RecordRun], records: dict[int, WebNLGRecord],
                   m: SoftMatcher) -> dict[str, float]:
    out = {}
    for mode in ("strict", "soft"):
        hits = [found_entities(r.entities, records[r.index].triples, m, mode == "soft")
                for r in runs]
        out[mode] = sum(h for h, _ in hits) / max(1, sum(n for _, n in hits))
    return out


def bootstrap(a: Counts, b: Counts | None = None, rounds: int = 1000,
              seed: int = 0) -> tuple[float, float]:
    """95% interval of F1(a) (or F1(a) - F1(b), paired) over records resampled."""
    rng, n, values = random.Random(seed), len(a.gold), []
    for _ in range(rounds):
        rows = [rng.randrange(n) for _ in range(n)]
        values.append(a.prf(rows)[2] - (b.prf(rows)[2] if b else 0.0))
    values.sort()
    return values[int(0.025 * rounds)], values[int(0.975 * rounds) - 1]


def cost(runs: Sequence[RecordRun]) -> dict[str, Any]:
    n = max(1, len(runs))
    calls = [c for r in runs for c in r.calls]
    prompt = sum(c["prompt_tokens"] for c in calls)
    completion = sum(c["completion_tokens"] for c in calls)
    return {
        "chunks": len(runs),
        "calls_per_chunk": round(len(calls) / n, 2),
        "prompt_tokens_per_chunk": round(prompt / n, 1),
        "completion_tokens_per_chunk": round(completion / n, 1),
        "tokens_per_chunk": round((prompt + completion) / n, 1),
        "seconds_per_chunk": round(sum(c["seconds"] for c in calls) / n, 2),
        "truncated_calls": sum(c["finish_reason"] == "length" for c in calls),
        "chunks_with_truncated_call": sum(
            any(c["finish_reason"] == "length" for c in r.calls) for r in runs),
        "chunks_retried": sum(len(r.calls) > 1 for r in runs if r.extractor != BASELINE),
        "triples_dropped": dict(sum((Counter(r.drops) for r in runs), Counter())),
        "failed_chunks": sum(r.error is not None for r in runs),
        "chunks_without_triples": sum(not r.triples for r in runs),
        "chunks_without_entities": sum(not r.entities for r in runs),
        "triples_per_chunk": round(sum(len(r.triples) for r in runs) / n, 2),
    }


def quality_row(name: str, counts: dict[str, Counts], entity_recall: dict[str, float],
                ) -> dict[str, Any]:
    row: dict[str, Any] = {"extractor": name}
    for mode, c in counts.items():
        p, r, f = c.prf()
        row[mode] = {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3),
                     "predicted": sum(c.predicted), "matched": sum(c.matched)}
    lo, hi = bootstrap(counts["soft"])
    row["soft"]["f1_ci95"] = [round(lo, 3), round(hi, 3)]
    row["entity_recall"] = {k: round(v, 3) for k, v in entity_recall.items()}
    row["gold"] = sum(counts["soft"].gold)
    return row


def judged(run: RecordRun, threshold: float) -> list[Predicted]:
    return [t for t, s in zip(run.triples, run.judge_scores, strict=True) if s >= threshold]


def triple_labels(run: RecordRun, record: WebNLGRecord, m: SoftMatcher, mode: str) -> list[int]:
    """1 for each predicted triple that matches some gold triple (`soft` or `pair`)."""
    return [int(any(m.same(t.subject, gs) and m.same(t.object, go)
                    and (mode == "pair" or m.any_same(t.predicates, gp))
                    for gs, gp, go in record.triples)) for t in run.triples]


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Probability that a matching triple outscores a non-matching one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return round(wins / (len(pos) * len(neg)), 3)


def judge_auroc(runs: Sequence[RecordRun], records: dict[int, WebNLGRecord],
                m: SoftMatcher) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("soft", "pair"):
        labels = [y for r in runs for y in triple_labels(r, records[r.index], m, mode)]
        out[mode] = {"positives": sum(labels), "triples": len(labels)}
        for judge_, pick in (("grounding", lambda r: r.judge_scores),
                             ("checker", lambda r: r.checker_scores)):
            scores = [x for r in runs for x in pick(r)]
            if len(scores) == len(labels):
                out[mode][judge_] = auroc(scores, labels)
    return out


def judge_rows(runs: Sequence[RecordRun], records: dict[int, WebNLGRecord], m: SoftMatcher,
               thresholds: Sequence[float], off: tuple[float, float, float]
               ) -> list[dict[str, Any]]:
    rows = []
    for t in sorted({0.0, *thresholds}):
        c = score_triples(runs, records, m, lambda r, t=t: judged(r, t))
        p, r, f = c["soft"].prf()
        sp, sr, sf = c["strict"].prf()
        rows.append({
            "threshold": t, "triples_kept": sum(c["soft"].predicted),
            "precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3),
            "precision_gained": round(p - off[0], 3), "recall_lost": round(off[1] - r, 3),
            "strict": {"precision": round(sp, 3), "recall": round(sr, 3), "f1": round(sf, 3)},
            "pair_f1": round(c["pair"].prf()[2], 3),
        })
    return rows


def evaluate(runs: dict[str, list[RecordRun]], records: dict[int, WebNLGRecord],
             m: SoftMatcher, thresholds: Sequence[float]) -> dict[str, Any]:
    kgrag = [name for name in runs if name != BASELINE]
    main = kgrag[-1]  # the last format given (lines by default) is the one the targets judge
    lr_runs = runs.get(BASELINE, [])
    counts = {name: score_triples(runs[name], records, m, lambda r: r.triples) for name in kgrag}
    if lr_runs:
        counts[BASELINE] = score_triples(lr_runs, records, m, lambda r: r.triples)
        counts[f"{BASELINE} (no gleaning)"] = score_triples(lr_runs, records, m,
                                                           lambda r: r.first_pass_triples)
    entity = {name: score_entities(rs, records, m) for name, rs in runs.items()}
    quality = [quality_row(name, c, entity.get(name, {})) for name, c in counts.items()]
    judges = {name: judge_rows(runs[name], records, m, thresholds, counts[name]["soft"].prf())
              for name in kgrag}
    aurocs = {name: judge_auroc(runs[name], records, m) for name in kgrag}
    costs = {name: cost(rs) for name, rs in runs.items()}
    if lr_runs:
        costs[BASELINE]["malformed_records"] = sum(r.malformed for r in lr_runs)
        costs[BASELINE]["chunks_with_malformed_records"] = sum(r.malformed > 0 for r in lr_runs)
        costs[BASELINE]["replies_without_completion_delimiter"] = sum(
            not done for r in lr_runs for done in r.completed)
        costs[BASELINE]["chunks_echoing_the_example"] = sum(r.example_leak for r in lr_runs)
        costs[BASELINE]["chunks_gleaning_added_triples"] = sum(
            len(r.triples) > len(r.first_pass_triples) for r in lr_runs)
    soft_f1, pair_f1 = counts[main]["soft"].prf()[2], counts[main]["pair"].prf()[2]
    best_auroc = max((v for k, v in aurocs[main]["soft"].items()
                      if k in ("grounding", "checker") and v is not None), default=0.0)
    target: dict[str, Any] = {
        "extractor": main, "soft_f1": round(soft_f1, 3), "pair_f1": round(pair_f1, 3),
        "judge_auroc_soft": best_auroc,
        "met": bool(soft_f1 >= 0.25 and pair_f1 >= 0.40 and best_auroc >= 0.75),
    }
    if lr_runs:
        lr_f1 = counts[BASELINE]["soft"].prf()[2]
        diff = bootstrap(counts[main]["soft"], counts[BASELINE]["soft"])
        target["token_ratio_vs_baseline"] = round(
            costs[main]["tokens_per_chunk"] / max(1.0, costs[BASELINE]["tokens_per_chunk"]), 3)
        target["f1_baseline"] = round(lr_f1, 3)
        target["f1_difference_ci95"] = [round(x, 3) for x in diff]
    return {"quality": quality, "cost": costs, "judge": judges, "judge_auroc": aurocs,
            "target": target}


# --- reporting ------------------------------------------------------------------------


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nquality ({report['gold_triples']} gold triples, {report['n']} chunks)")
    print(f"{'extractor':<24}{'triples':>8}" + "".join(
        f"{m + ' P/R/F1':>20}" for m in ("strict", "soft", "pair")) + f"{'ent R s/soft':>14}")
    for row in report["quality"]:
        cells = "".join(f"{row[m]['precision']:>8.2f}{row[m]['recall']:>6.2f}"
                        f"{row[m]['f1']:>6.2f}" for m in ("strict", "soft", "pair"))
        ent = row["entity_recall"]
        ent_s = f"{ent['strict']:>8.2f}{ent['soft']:>6.2f}" if ent else f"{'-':>14}"
        print(f"{row['extractor']:<24}{row['soft']['predicted']:>8}{cells}{ent_s}")
    print("\ncost per chunk (first, uncached run)")
    print(f"{'extractor':<12}{'calls':>7}{'prompt':>8}{'compl':>7}{'total':>7}{'s':>7}"
          f"{'failed':>8}{'empty':>7}{'trunc':>7}")
    for name, c in report["cost"].items():
        n = max(1, c["chunks"])
        print(f"{name:<12}{c['calls_per_chunk']:>7}{c['prompt_tokens_per_chunk']:>8.0f}"
              f"{c['completion_tokens_per_chunk']:>7.0f}{c['tokens_per_chunk']:>7.0f}"
              f"{c['seconds_per_chunk']:>7.1f}{c['failed_chunks'] / n:>8.0%}"
              f"{c['chunks_without_triples'] / n:>7.0%}"
              f"{c['chunks_with_truncated_call'] / n:>7.0%}")
    for name, rows in report["judge"].items():
        print(f"\n{name} with the GroundingJudge (soft match; threshold 0 = judge off)")
        print(f"{'threshold':>9}{'kept':>6}{'P':>7}{'R':>7}{'F1':>7}{'P gained':>10}"
              f"{'R lost':>8}")
        for j in rows:
            print(f"{j['threshold']:>9.2f}{j['triples_kept']:>6}{j['precision']:>7.3f}"
                  f"{j['recall']:>7.3f}{j['f1']:>7.3f}{j['precision_gained']:>+10.3f}"
                  f"{j['recall_lost']:>8.3f}")
    print("\njudge AUROC against the match labels (does a judge rank real facts above junk?)")
    for name, a in report["judge_auroc"].items():
        for mode, v in a.items():
            print(f"  {name:<12}{mode:<6}{v['positives']:>5}/{v['triples']:<5} matching   "
                  + "   ".join(f"{j} {v[j]}" for j in ("grounding", "checker") if j in v))
    t = report["target"]
    print(f"\ntarget ({t['extractor']}: soft F1 >= 0.25, pair F1 >= 0.40, judge AUROC >= 0.75): "
          f"soft F1 {t['soft_f1']:.3f}, pair F1 {t['pair_f1']:.3f}, AUROC "
          f"{t['judge_auroc_soft']}: {'met' if t['met'] else 'NOT met'}")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    rows = report["quality"]
    main_name = report["target"]["extractor"]
    judge05 = next((j for j in report["judge"][main_name] if j["threshold"] == 0.5), None)
    names = [r["extractor"].replace(" (", "\n(") for r in rows]
    bars = [[r["soft"][k] for r in rows] for k in ("precision", "recall", "f1")]
    pair = [r["pair"]["f1"] for r in rows]
    if judge05:
        names.append(f"{main_name}\n+judge 0.5")
        for series, k in zip(bars, ("precision", "recall", "f1"), strict=True):
            series.append(judge05[k])
        pair.append(judge05["pair_f1"])
    x = np.arange(len(names))
    for i, (series, label) in enumerate(zip(bars, ("precision", "recall", "F1"), strict=True)):
        axes[0].bar(x + (i - 1) * 0.27, series, 0.27, label=label)
    axes[0].plot(x, pair, "k_", markersize=22, mew=2, label="F1, pair match")
    axes[0].set_xticks(x, names, fontsize=7)
    axes[0].set(title="triples, soft match", ylim=(0, 1))
    axes[0].legend(fontsize=7)

    costs = report["cost"]
    cx = np.arange(len(costs))
    prompt = [c["prompt_tokens_per_chunk"] for c in costs.values()]
    completion = [c["completion_tokens_per_chunk"] for c in costs.values()]
    axes[1].bar(cx, prompt, label="prompt")
    axes[1].bar(cx, completion, bottom=prompt, label="completion")
    for i, c in enumerate(costs.values()):
        axes[1].annotate(f"{c['calls_per_chunk']} calls\n{c['seconds_per_chunk']:.0f} s",
                         (i, prompt[i] + completion[i]), ha="center", va="bottom", fontsize=7)
    axes[1].set_xticks(cx, list(costs))
    axes[1].set(title="tokens per chunk", ylim=(0, 1.25 * max(p + c for p, c in
                                                              zip(prompt, completion,
                                                                  strict=True))))
    axes[1].legend(fontsize=7)

    js = report["judge"][main_name]
    axes[2].plot([j["threshold"] for j in js], [j["precision"] for j in js], "o-",
                 label="precision")
    axes[2].plot([j["threshold"] for j in js], [j["recall"] for j in js], "s-", label="recall")
    axes[2].plot([j["threshold"] for j in js], [j["f1"] for j in js], "^-", label="F1")
    axes[2].set(title=f"{main_name} + GroundingJudge", xlabel="threshold (0 = off)", ylim=(0, 1))
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{report['model']}, WebNLG even records, n={report['n']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_to_json(run: RecordRun) -> dict[str, Any]:
    d = asdict(run)
    for key in ("triples", "first_pass_triples"):
        d[key] = [[t["subject"], " | ".join(t["predicates"]), t["object"]] for t in d[key]]
    return d


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="even-index records to score")
    parser.add_argument("--variant", choices=sorted(SPECS), default="0.5b")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (1 is fastest on 2 shared cores)")
    parser.add_argument("--sim", type=float, default=0.8, help="soft-match cosine threshold")
    parser.add_argument("--thresholds", default="0.5,0.7,0.8,0.85,0.9",
                        help="GroundingJudge thresholds (0.7 is the setting's default)")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--formats", default="json,lines",
                        help="kgrag output formats to run side by side (the last is judged "
                        "by the targets)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the LightRAG baseline")
    parser.add_argument("--checker", type=Path, default=ROOT / "data" / "models" /
                        "grounding-checker", help="trained grounding checker for the "
                        "CheckerJudge column (skipped when missing)")
    args = parser.parse_args()

    base = load_settings(data_dir=CACHE, llm_cache=True, llm_threads=args.threads)
    model_path = assemble_model(base, args.variant, models_dir=args.models_dir)
    model_name = SPECS[args.variant].name
    settings = load_settings(data_dir=CACHE, llm_cache=True, llm_threads=args.threads,
                             llm_model_path=model_path, llm_model=model_name)
    records = [r for r in webnlg_records() if r.index % 2 == 0][: args.n]
    by_index = {r.index: r for r in records}
    embedder = SentenceTransformerEmbedder.from_settings(settings)
    checker = None
    if (args.checker / "checker.json").is_file():
        from retrieval.checker import CrossEncoderGroundingChecker

        checker = CrossEncoderGroundingChecker(args.checker)
    formats = [f for f in args.formats.split(",") if f]
    runner = Runner(settings, embedder, model_name, formats, checker)

    load_before = os.getloadavg()
    names = [*runner.names, *([] if args.no_baseline else [BASELINE])]
    runs: dict[str, list[RecordRun]] = {name: [] for name in names}
    start = time.perf_counter()
    for i, record in enumerate(records):
        order = names[i % len(names):] + names[:i % len(names)]  # rotated: load hits all alike
        for name in order:
            run = (runner.run_baseline(record) if name == BASELINE
                   else runner.run_kgrag(record, name))
            runs[name].append(run)
        cells = "  ".join(
            f"{name} {len(rs[-1].triples):>2} tr {sum(c['seconds'] for c in rs[-1].calls):5.1f} s"
            f"{' (c)' if rs[-1].cached else ''}{' ERR' if rs[-1].error else ''}"
            for name, rs in runs.items())
        print(f"  {i + 1:>3}/{len(records)} #{record.index:<4} gold {len(record.triples)}  "
              f"{cells}", flush=True)
    wall = time.perf_counter() - start

    matcher = SoftMatcher(embedder.embed, args.sim)
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    report: dict[str, Any] = {
        "model": model_name, "n": len(records), "indexes": [r.index for r in records],
        "gold_triples": sum(len(r.triples) for r in records),
        "soft_match": {"embedding": settings.embed_model, "cosine_threshold": args.sim,
                       "normalisation": "NFKC, camelCase split, casefold, underscores and "
                       "punctuation to spaces, whitespace squashed"},
        "judges": ["kg.judge.GroundingJudge", *(["kg.judge.CheckerJudge"] if checker else [])],
        "max_tokens": settings.llm_max_tokens, "threads": args.threads,
        "example_chars": len(EXAMPLE),
    }
    report.update(evaluate(runs, by_index, matcher, thresholds))
    report["judge_thresholds"] = thresholds
    loads = [c["load1"] for rs in runs.values() for r in rs for c in r.calls if "load1" in c]
    report["run"] = {"wall_seconds_this_run": round(wall, 1), "cpus": os.cpu_count(),
                     "first_run_load1_mean": round(sum(loads) / len(loads), 2) if loads else None,
                     "loadavg_before": [round(x, 2) for x in load_before],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                     "python": platform.python_version()}
    report["records"] = {name: [run_to_json(r) for r in rs] for name, rs in runs.items()}
    print_tables(report)

    OUT.mkdir(parents=True, exist_ok=True)
    stem = "extract" if args.variant == "0.5b" else f"extract-{args.variant}"
    (OUT / f"{stem}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    plot(report, OUT / f"{stem}.png")
    print(f"wrote {OUT / (stem + '.json')} and {stem}.png")


if __name__ == "__main__":
    main()
