"""`distill_extractor`: distil your own one-call extractor from a multi-step teacher.

    sample chunks (from the graph store and/or documents chunked by the ingest chunker)
    -> teacher: SynthKG workflow, several calls per chunk -> chat JSONL (train/validation)
    -> train: LoRA fine-tune of a small student, loss on the assistant turn only
    -> export: adapter (vLLM --lora-modules), merged weights (vllm serve), llama.cpp LoRA GGUF
    -> evaluate: student vs teacher on the validation chunks (triple F1, calls and tokens)

Every stage reads what the previous one wrote under `workdir` (default
`$KGRAG_DATA_DIR/distill`), so the stages run separately too (`kgrag distill teacher`,
`train`, `export`, `evaluate`) or all at once (`kgrag distill run`).

    >>> from flows.distill import distill_extractor
    >>> summary = distill_extractor(sources=["docs/"], limit=200)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.errors import ConfigError
from core.models import Chunk
from core.settings import Settings, get_settings
from flows.components import Components
from flows.progress import report
from kg.distill.base_models import DEFAULT_STUDENT_BASE, resolve_base
from kg.distill.student import TrainConfig
from kg.extract import ChunkContext

STAGES = ("teacher", "train", "export", "evaluate")

#: Chunks with their document's title, in reading order (for the previous-chunk context).
GRAPH_CHUNKS = """
MATCH (c:Chunk)-[:PART_OF]->(d:Document)
RETURN c.id AS id, c.doc_id AS doc_id, c.text AS text, c.start AS start, c.end AS end,
       c.position AS position, d.title AS title
ORDER BY c.doc_id, c.position, c.start
"""


@dataclass(frozen=True)
class DistillPaths:
    """Where each stage writes, under one work directory."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def student(self) -> Path:
        return self.root / "student"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def report(self) -> Path:
        return self.root / "eval" / "report.json"


def contexts_in_order(chunks: Sequence[Chunk], titles: dict[str, str]) -> list[ChunkContext]:
    """Each chunk with its document title and the text of the chunk before it."""
    out: list[ChunkContext] = []
    previous: dict[str, str] = {}
    for ch in sorted(chunks, key=lambda c: (c.doc_id, c.position, c.start)):
        out.append(ChunkContext(ch, titles.get(ch.doc_id, ""), previous.get(ch.doc_id, "")))
        previous[ch.doc_id] = ch.text
    return out


def sample(contexts: Sequence[ChunkContext], limit: int, seed: int = 0) -> list[ChunkContext]:
    """A deterministic sample of `limit` contexts (by a seeded hash of the chunk id)."""
    def key(c: ChunkContext) -> str:
        return hashlib.sha256(f"{seed}:{c.chunk.id}".encode()).hexdigest()

    unique = {c.chunk.id: c for c in contexts}
    return sorted(unique.values(), key=key)[:limit] if limit > 0 else list(unique.values())


# ------------------------------------------------------------------------------ tasks


@task(name="chunk-documents-for-distillation", cache_policy=NO_CACHE)
def contexts_from_documents(sources: Sequence[str], settings: Settings) -> list[ChunkContext]:
    from flows.ingest import ingest_config
    from ingest.chunking import SentenceChunker
    from ingest.clean import DocumentCleaner
    from ingest.loaders import CorpusLoader

    config = ingest_config(settings)
    docs = [r.document for r in CorpusLoader(config).run(list(sources)) if r.document]
    kept = DocumentCleaner(config).run(docs).kept
    return contexts_in_order(SentenceChunker(config).run(kept),
                             {d.id: d.title for d in kept})


@task(name="read-graph-chunks", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def contexts_from_graph(c: Components) -> list[ChunkContext]:
    rows = c.graph.read_query(GRAPH_CHUNKS, limit=1_000_000).rows
    chunks = [Chunk(id=r["id"], doc_id=r["doc_id"], text=r["text"], start=int(r["start"]),
                    end=int(r["end"]), position=int(r["position"])) for r in rows]
    return contexts_in_order(chunks, {r["doc_id"]: r["title"] or "" for r in rows})


@task(name="teacher-data", cache_policy=NO_CACHE)
def teacher_data(c: Components, contexts: Sequence[ChunkContext], out_dir: Path,
                 validation_fraction: float, max_propositions: int) -> dict[str, Any]:
    from kg.distill.dataset import write_dataset
    from kg.distill.teacher import SynthKGTeacher

    llm = c.llm
    teacher = SynthKGTeacher(llm, concurrency=c.settings.llm_concurrency,
                             max_propositions=max_propositions)
    t0 = time.perf_counter()
    examples = teacher.run(contexts, lambda done, total: report("teacher", done, total))
    manifest = write_dataset(examples, out_dir, llm.model_name, validation_fraction,
                             time.perf_counter() - t0)
    return manifest.to_json()


@task(name="train-student", cache_policy=NO_CACHE)
def train(settings: Settings, base_model: str, data_dir: Path, out_dir: Path,
          cfg: TrainConfig) -> dict[str, Any]:
    from kg.distill.student import train_student

    base = resolve_base(base_model, settings.models_dir)
    result = train_student(base, data_dir, out_dir, cfg,
                           lambda done, total: report("train", done, total))
    return result.to_json()


@task(name="export-student", cache_policy=NO_CACHE)
def export(settings: Settings, base_model: str, student_dir: Path, out_dir: Path
           ) -> dict[str, Any]:
    from kg.distill.export import export_student

    report("export", 0, 1)
    result = export_student(resolve_base(base_model, settings.models_dir), student_dir, out_dir)
    report("export", 1, 1)
    return asdict(result)


@task(name="evaluate-student", cache_policy=NO_CACHE)
def evaluate(c: Components, paths: DistillPaths, max_tokens: int, include_base: bool
             ) -> dict[str, Any]:
    from kg.distill.evaluate import evaluate_student, write_report

    exported = paths.export / "export.json"
    if not exported.is_file():
        raise ConfigError(f"no exported student in {paths.export}",
                          hint="run `kgrag distill export` first")
    info = json.loads(exported.read_text(encoding="utf-8"))
    if not info.get("base_gguf") or not info.get("lora_gguf"):
        raise ConfigError("evaluate runs the student in llama.cpp and needs a GGUF base and "
                          f"a LoRA GGUF ({info.get('lora_gguf_error') or 'base is not a GGUF'})",
                          hint="serve the adapter with vLLM (see export.json) and point "
                          "bench/distill_bench.py at it, or train on a GGUF base")
    validation = paths.data / "validation.jsonl"
    total = sum(1 for line in validation.read_text().splitlines() if line.strip()) \
        if validation.is_file() else 0
    if not total:
        raise ConfigError(f"no validation examples in {validation}",
                          hint="sample more chunks (--limit) or raise --validation")
    models = 2 if include_base else 1
    done = {"student": 0, "base": 0}

    def progress(name: str, i: int, _n: int) -> None:
        done[name] = i
        report("evaluate", sum(done.values()), total * models)

    result = evaluate_student(paths.data, Path(info["base_gguf"]), Path(info["lora_gguf"]),
                              c.embedder.embed, max_tokens=max_tokens,
                              n_ctx=c.settings.llm_context, include_base=include_base,
                              progress=progress)
    write_report(result, paths.report)
    return result


# ------------------------------------------------------------------------------ flow


@flow(name="distill_extractor", log_prints=False, persist_result=False)
def distill_extractor(
    stages: list[str] | None = None,
    sources: list[str] | None = None,
    from_graph: bool = False,
    limit: int = 50,
    validation_fraction: float = 0.2,
    max_propositions: int = 15,
    base_model: str | None = None,
    train_config: TrainConfig | None = None,
    eval_max_tokens: int = 768,
    include_base: bool = True,
    workdir: str | None = None,
) -> dict[str, Any]:
    """Run the distillation `stages` (default: all, in order). Returns a summary with each
    stage's result (also a markdown artifact and `workdir/summary.json`)."""
    log = get_run_logger()
    settings = get_settings()
    todo = list(stages or STAGES)
    unknown = [s for s in todo if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}",
                          hint=f"choose from {', '.join(STAGES)}")
    paths = DistillPaths(Path(workdir) if workdir else settings.data_dir / "distill")
    paths.root.mkdir(parents=True, exist_ok=True)
    c = Components.from_settings(settings)
    summary: dict[str, Any] = {"workdir": str(paths.root), "stages": todo, "seconds": {}}
    try:
        for stage in STAGES:
            if stage not in todo:
                continue
            t0 = time.perf_counter()
            if stage == "teacher":
                contexts = _contexts(c, sources or [], from_graph, settings)
                picked = sample(contexts, limit)
                log.info("teacher: %d of %d chunks sampled", len(picked), len(contexts))
                summary["teacher"] = teacher_data(c, picked, paths.data, validation_fraction,
                                                  max_propositions)
            elif stage == "train":
                summary["train"] = train(settings, base_model or DEFAULT_STUDENT_BASE,
                                         paths.data, paths.student,
                                         train_config or TrainConfig())
            elif stage == "export":
                summary["export"] = export(settings, base_model or trained_base(paths),
                                           paths.student, paths.export)
            else:
                summary["evaluate"] = evaluate(c, paths, eval_max_tokens, include_base)
            summary["seconds"][stage] = round(time.perf_counter() - t0, 2)
    finally:
        c.close()
        (paths.root / "summary.json").write_text(json.dumps(summary, indent=2, default=str)
                                                 + "\n", encoding="utf-8")
    try:
        create_markdown_artifact(markdown=to_markdown(summary), key="distill-summary",
                                 description="distill_extractor run summary")
    except Exception as exc:  # an artifact is a courtesy; the summary is returned anyway
        log.warning("could not store the summary artifact: %s", exc)
    return summary


def trained_base(paths: DistillPaths) -> str:
    """The base model the student in `paths` was trained on (the default if unknown)."""
    training = paths.student / "training.json"
    if training.is_file():
        return str(json.loads(training.read_text(encoding="utf-8"))["base"])
    return DEFAULT_STUDENT_BASE


def _contexts(c: Components, sources: Sequence[str], from_graph: bool, settings: Settings
              ) -> list[ChunkContext]:
    if not sources and not from_graph:
        raise ConfigError("no chunks to teach from", hint="give document paths, or "
                          "--from-graph to sample chunks already ingested")
    contexts: list[ChunkContext] = []
    if from_graph:
        contexts += contexts_from_graph(c)
    if sources:
        contexts += contexts_from_documents(sources, settings)
    if not contexts:
        raise ConfigError("no chunks found in " + (", ".join(sources) or "the graph store"),
                          hint="ingest documents first (`kgrag ingest PATH`) or give paths "
                          "of readable documents")
    return contexts


def to_markdown(summary: dict[str, Any]) -> str:
    lines = ["# distill_extractor", "", f"work directory: `{summary['workdir']}`", ""]
    if t := summary.get("teacher"):
        pc = t["per_chunk"]
        lines.append(f"- teacher `{t['teacher_model']}`: {t['chunks']} chunks -> {t['train']} "
                     f"train / {t['validation']} validation ({t['failed']} failed); "
                     f"{pc['calls']} calls, {pc['prompt_tokens']} + "
                     f"{pc['completion_tokens']} tokens per chunk")
    if t := summary.get("train"):
        means = t["epoch_mean_loss"]
        lines.append(f"- train on `{t['base']}` ({t['device']}): {len(t['steps'])} steps, "
                     f"{t['seconds']} s, mean loss per epoch {means}")
    if t := summary.get("export"):
        lines.append(f"- export: adapter `{t['adapter_dir']}`, merged `{t['merged_dir']}`, "
                     f"llama.cpp LoRA `{t['lora_gguf'] or t['lora_gguf_error']}`")
    if t := summary.get("evaluate"):
        for name in ("student", "base"):
            if name in t:
                q = t[name]["quality"]["soft"]
                lines.append(f"- {name}: triple F1 vs teacher {q['f1']} (P {q['precision']}, "
                             f"R {q['recall']}), {t[name]['per_chunk']['calls']} call/chunk")
        lines.append(f"- saving: {t['saving']['calls_ratio']}x fewer calls, "
                     f"{t['saving']['tokens_ratio']}x fewer tokens per chunk")
    return "\n".join(lines) + "\n"
