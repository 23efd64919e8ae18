"""Student against teacher on the validation chunks: triple F1 and cost per chunk.

Each model gets exactly the extractor's single-call request (`build_messages` + the
`CHUNK_GRAPH_SCHEMA` grammar, temperature 0). The reference is the teacher's assembled
graph (the assistant turn of each validation example); triples are scored with the
soft matching of `kg.scoring` (the extraction benchmark's). Both the fine-tuned student
(base GGUF + LoRA GGUF in llama.cpp) and the untuned base are scored, so the report shows
what the fine-tune changed; the teacher's calls and tokens come from the dataset manifest.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.llm.base import ChatModel, Completion, CompletionRequest, acomplete_many
from core.llm.local import LlamaCppChatModel
from kg.distill.dataset import DatasetManifest
from kg.distill.student import read_jsonl
from kg.extract import CHUNK_GRAPH_SCHEMA, ChunkGraph, parse_chunk_graph
from kg.scoring import MODES, Counts, Gold, Predicted, SoftMatcher, matched_triples

Progress = Callable[[str, int, int], None]  # (model, chunks done, chunks total)


class LoraLlamaCppChatModel(LlamaCppChatModel):
    """The local backend with a llama.cpp LoRA adapter applied to its base GGUF."""

    def __init__(self, model_path: Path, lora_path: Path | None, **kwargs: Any) -> None:
        super().__init__(model_path, **kwargs)
        self.lora_path = lora_path

    def _loaded(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            extra: dict[str, Any] = {"lora_path": str(self.lora_path)} if self.lora_path else {}
            self._llama = Llama(model_path=str(self.model_path), n_ctx=self.n_ctx,
                                n_threads=self.n_threads, n_threads_batch=self.n_threads,
                                verbose=False, **extra)
        return self._llama


@dataclass
class ModelScore:
    """One model's triples against the teacher's, and what it spent."""

    name: str
    chunks: int = 0
    failed: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    counts: dict[str, Counts] = field(default_factory=lambda: {m: Counts() for m in MODES})
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        n = max(1, self.chunks)
        quality = {}
        for mode, c in self.counts.items():
            p, r, f = c.prf()
            quality[mode] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}
        return {"name": self.name, "chunks": self.chunks, "failed": self.failed,
                "triples": sum(self.counts["soft"].predicted), "quality": quality,
                "per_chunk": {"calls": round(self.calls / n, 2),
                              "prompt_tokens": round(self.prompt_tokens / n, 1),
                              "completion_tokens": round(self.completion_tokens / n, 1),
                              "seconds": round(self.seconds / n, 2)},
                "errors": self.errors[:10]}


def triples_of(graph: ChunkGraph) -> list[Gold]:
    return [(t.subject, t.predicate, t.object) for t in graph.triples]


def score_model(name: str, model: ChatModel, examples: Sequence[list[dict[str, str]]],
                matcher: SoftMatcher, max_tokens: int,
                progress: Progress | None = None) -> ModelScore:
    """Run `model` on every example's prompt and score its triples against the teacher's."""
    score = ModelScore(name)
    for i, messages in enumerate(examples):
        reference = triples_of(parse_chunk_graph(messages[-1]["content"]))
        request = CompletionRequest.of(messages[:-1], json_schema=CHUNK_GRAPH_SCHEMA,
                                       max_tokens=max_tokens, temperature=0.0)
        t0 = time.perf_counter()
        reply = asyncio.run(acomplete_many(model, [request], 1))[0]
        score.seconds += time.perf_counter() - t0
        score.chunks += 1
        score.calls += 1
        predicted: list[Gold] = []
        if isinstance(reply, Completion):
            score.prompt_tokens += reply.prompt_tokens
            score.completion_tokens += reply.completion_tokens
            try:
                predicted = triples_of(parse_chunk_graph(reply.text))
            except ValidationError:
                score.failed += 1
                score.errors.append(f"chunk {i}: invalid output, began {reply.text[:80]!r}")
        else:
            score.failed += 1
            score.errors.append(f"chunk {i}: {reply!r}"[:200])
        matcher.prepare([x for t in predicted + reference for x in t])
        pred = [Predicted(s, (p,), o) for s, p, o in predicted]
        for mode, c in score.counts.items():
            c.add(len(pred), len(reference), matched_triples(pred, reference, matcher, mode))
        if progress is not None:
            progress(name, i + 1, len(examples))
    return score


def evaluate_student(data_dir: Path, base_gguf: Path, lora_gguf: Path,
                     embed: Callable[[Sequence[str]], Any], *, threshold: float = 0.8,
                     max_tokens: int = 768, n_ctx: int = 4096, include_base: bool = True,
                     progress: Progress | None = None) -> dict[str, Any]:
    """The report: teacher / student / base quality and cost per chunk, and the saving."""
    examples = read_jsonl(data_dir / "validation.jsonl")
    manifest = DatasetManifest.load(data_dir / "manifest.json")
    val = [e for e in manifest.examples if e["split"] == "validation"]
    n = max(1, len(val))
    teacher = {"name": manifest.teacher_model, "chunks": len(val),
               "triples": sum(e["triples"] for e in val),
               "per_chunk": {k: round(sum(e[k] for e in val) / n, 2)
                             for k in ("calls", "prompt_tokens", "completion_tokens")}}
    matcher = SoftMatcher(embed, threshold)
    models: dict[str, ModelScore] = {}
    runs: list[tuple[str, Path | None]] = [("student", lora_gguf)]
    if include_base:
        runs.append(("base", None))
    for name, lora in runs:
        model = LoraLlamaCppChatModel(base_gguf, lora, model_name=name, n_ctx=n_ctx,
                                      max_tokens=max_tokens)
        try:
            models[name] = score_model(name, model, examples, matcher, max_tokens, progress)
        finally:
            asyncio.run(model.aclose())
    student = models["student"].to_json()
    t_tokens = teacher["per_chunk"]["prompt_tokens"] + teacher["per_chunk"]["completion_tokens"]
    s_tokens = (student["per_chunk"]["prompt_tokens"]
                + student["per_chunk"]["completion_tokens"])
    return {
        "validation_chunks": len(examples), "match_threshold": threshold,
        "teacher": teacher, **{k: v.to_json() for k, v in models.items()},
        "saving": {
            "calls_ratio": round(teacher["per_chunk"]["calls"]
                                 / max(1e-9, student["per_chunk"]["calls"]), 2),
            "tokens_ratio": round(t_tokens / max(1e-9, s_tokens), 2),
            "calls_saved_per_chunk": round(teacher["per_chunk"]["calls"]
                                           - student["per_chunk"]["calls"], 2),
            "tokens_saved_per_chunk": round(t_tokens - s_tokens, 1),
        },
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
