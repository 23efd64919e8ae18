"""The distillation dataset: chat-format JSONL in exactly the extractor's single-call format.

Each line is `{"messages": [...kg.extract.build_messages(ctx), {"role": "assistant",
"content": <ChunkGraph JSON>}]}` — what OpenAI / TRL / axolotl-style chat fine-tuning
reads. The split is deterministic: a chunk goes to validation when the sha256 of its id
falls in the first `validation_fraction` of the hash range, so the same chunk always lands
on the same side, whatever else is in the sample (with at least one example on each side
when there are two or more). `manifest.json` records the teacher, the counts, the calls
and tokens, and every example's chunk id, split and teacher cost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kg.distill.teacher import TeacherExample, graph_json
from kg.extract import build_messages

TRAIN, VALIDATION = "train", "validation"


def hash_fraction(chunk_id: str) -> float:
    return int(hashlib.sha256(chunk_id.encode()).hexdigest()[:12], 16) / float(1 << 48)


def split_ids(chunk_ids: Sequence[str], validation_fraction: float) -> dict[str, str]:
    """chunk id -> "train" | "validation", deterministic (see the module doc)."""
    ranked = sorted(chunk_ids, key=hash_fraction)
    split = {c: VALIDATION if hash_fraction(c) < validation_fraction else TRAIN for c in ranked}
    if len(ranked) >= 2 and validation_fraction > 0:
        if all(v == TRAIN for v in split.values()):
            split[ranked[0]] = VALIDATION
        if all(v == VALIDATION for v in split.values()):
            split[ranked[-1]] = TRAIN
    return split


def chat_record(example: TeacherExample) -> dict[str, Any]:
    assert example.graph is not None
    return {"messages": [*build_messages(example.ctx),
                         {"role": "assistant", "content": graph_json(example.graph)}]}


@dataclass
class DatasetManifest:
    """What the teacher step produced and what it cost."""

    teacher_model: str
    chunks: int = 0
    train: int = 0
    validation: int = 0
    failed: int = 0
    validation_fraction: float = 0.2
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def per_chunk(self) -> dict[str, float]:
        n = max(1, self.chunks)
        return {"calls": round(self.calls / n, 2),
                "prompt_tokens": round(self.prompt_tokens / n, 1),
                "completion_tokens": round(self.completion_tokens / n, 1)}

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "per_chunk": self.per_chunk}

    @classmethod
    def load(cls, path: Path) -> DatasetManifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("per_chunk", None)
        return cls(**data)


def write_dataset(examples: Sequence[TeacherExample], out_dir: Path, teacher_model: str,
                  validation_fraction: float = 0.2, seconds: float = 0.0) -> DatasetManifest:
    """Write `train.jsonl`, `validation.jsonl` and `manifest.json` under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    good = [e for e in examples if e.graph is not None and not e.failed]
    split = split_ids([e.ctx.chunk.id for e in good], validation_fraction)
    m = DatasetManifest(teacher_model=teacher_model, chunks=len(examples),
                        validation_fraction=validation_fraction, seconds=round(seconds, 2))
    files = {TRAIN: (out_dir / "train.jsonl").open("w", encoding="utf-8"),
             VALIDATION: (out_dir / "validation.jsonl").open("w", encoding="utf-8")}
    try:
        for e in examples:
            m.calls += e.calls
            m.prompt_tokens += e.prompt_tokens
            m.completion_tokens += e.completion_tokens
            if e.graph is None or e.failed:
                m.failed += 1
                m.failures.append({"chunk_id": e.ctx.chunk.id, "error": e.error or "no graph"})
                continue
            side = split[e.ctx.chunk.id]
            files[side].write(json.dumps(chat_record(e), ensure_ascii=False) + "\n")
            setattr(m, side, getattr(m, side) + 1)
            m.examples.append({"chunk_id": e.ctx.chunk.id, "doc_id": e.ctx.chunk.doc_id,
                               "split": side, "triples": len(e.graph.triples), **e.cost()})
    finally:
        for fh in files.values():
            fh.close()
    (out_dir / "manifest.json").write_text(json.dumps(m.to_json(), indent=2) + "\n",
                                           encoding="utf-8")
    return m
