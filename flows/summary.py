"""The run summary of `ingest_corpus`: counts, problems with reasons, cost, time per stage."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Problem:
    """One thing that did not land, and why (`where`: file, file#line, or chunk id)."""

    where: str
    reason: str
    kind: str = ""


@dataclass
class IngestSummary:
    sources: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    error: str = ""  # set when the run itself died; what landed before it stays
    documents_seen: int = 0
    new: int = 0
    unchanged: int = 0
    changed: int = 0
    resumed: int = 0  # started by an earlier run that was killed before it finished them
    removed: list[Problem] = field(default_factory=list)  # their files are gone (opt-in)
    dropped: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    chunks: int = 0
    chunks_removed: int = 0
    mention_entities: int = 0  # entities the mention layer (spaCy, no LLM) wrote
    mentions: int = 0
    synonyms: int = 0
    entities: int = 0
    relations_kept: int = 0
    relations_dropped: int = 0
    triples_dropped: dict[str, int] = field(default_factory=dict)  # before the judge, by reason
    propositions: int = 0
    failed_chunks: list[Problem] = field(default_factory=list)
    retried_chunks: int = 0  # chunks an earlier run failed to extract, tried again
    llm: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def add_time(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0) + seconds, 3)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            "# Ingest summary",
            "",
            "| documents | count |", "|---|---|",
            f"| seen | {self.documents_seen} |", f"| new | {self.new} |",
            f"| changed | {self.changed} |", f"| resumed | {self.resumed} |",
            f"| unchanged (skipped) | {self.unchanged} |",
            f"| dropped | {len(self.dropped)} |", f"| failed | {len(self.failed)} |",
            f"| removed (file gone) | {len(self.removed)} |",
            "",
            f"Chunks written: {self.chunks} (removed: {self.chunks_removed}). "
            f"Mention layer: {self.mention_entities} entities, {self.mentions} mentions, "
            f"{self.synonyms} synonym edges. "
            f"Entities: {self.entities}, relations kept {self.relations_kept} / dropped by "
            f"the judge {self.relations_dropped}, propositions {self.propositions}, "
            f"failed chunks {len(self.failed_chunks)}"
            + (f" (retried from earlier runs: {self.retried_chunks})" if self.retried_chunks
               else "") + ".",
        ]
        if self.triples_dropped:
            lines.append("Triples dropped before the judge: " + ", ".join(
                f"{n} {why}" for why, n in sorted(self.triples_dropped.items())) + ".")
        if self.llm:
            lines.append(f"LLM: {self.llm.get('calls', 0)} calls "
                         f"({self.llm.get('cached_calls', 0)} from cache), "
                         f"{self.llm.get('prompt_tokens', 0)} prompt + "
                         f"{self.llm.get('completion_tokens', 0)} completion tokens.")
        lines += ["", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in self.stage_seconds.items()]
        for title, items in (("Failed", self.failed), ("Dropped", self.dropped),
                             ("Failed chunks", self.failed_chunks),
                             ("Removed (file gone)", self.removed)):
            if items:
                lines += ["", f"## {title}", ""]
                lines += [f"- `{p.where}`: {p.kind + ': ' if p.kind else ''}{p.reason}"
                          for p in items[:200]]
                if len(items) > 200:
                    lines.append(f"- ... and {len(items) - 200} more")
        return "\n".join(lines)


def save_run_summary(summary: IngestSummary, runs_dir: Path) -> Path:
    """Keep the summary as `runs_dir/<start time>.json` (the UI's list of recent runs)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(summary.started_at))
    path = runs_dir / f"ingest-{stamp}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary.to_json(), indent=1, ensure_ascii=False))
    tmp.replace(path)
    return path


def recent_runs(runs_dir: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest saved summaries first."""
    files = sorted(runs_dir.glob("ingest-*.json"), reverse=True)[:limit]
    runs = []
    for f in files:
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return runs
