"""`evaluate`: a file of questions, with gold answers and sources, through the chosen QA
modes; a scored report per mode.

    read the questions (JSONL; bad lines reported, the rest kept)
    -> per mode, per question: answer (the QA pipeline) -> score: EM and F1 of the short
       answer, support recall (gold source files the answer cites), grounding (the
       verifier's score), LLM calls, tokens, seconds -> save the report
    -> per-mode summary, a plot, a markdown artifact

The report is `<data_dir>/evaluations/<start time>-<name>.json`, the plot beside it as
.png. It is saved after every answer, so a run that was cut off (killed, or stopped by an
error) resumes: the next run of the same name answers only what it had not answered.

A mode is an ask mode (auto, rag, tog, direct), optionally with the passage retriever it
uses (`rag:dense`, `rag:ppr`; default: the `retriever` setting), so retrievers can be
compared on the same questions.

    >>> from flows.evaluate import evaluate
    >>> report = evaluate("ingest/samples/questions.jsonl", ["rag:dense", "rag:ppr"])
    ... # doctest: +SKIP
    >>> report["summary"]["rag:ppr"]["f1"]                                # doctest: +SKIP
    0.71
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.answer import Answer
from core.errors import KgragError, LLMCallError, LLMOutputError, QueryError
from core.protocols import GraphStore
from core.settings import RetrieverName, Settings, get_settings
from flows.components import CHUNK_INDEX, ENTITY_INDEX, Components
from flows.evaluation_report import (
    EvaluationReport,
    Question,
    Row,
    evaluations_dir,
    load_reports,
    new_report_path,
    plot_report,
    read_questions,
    report_name,
)
from flows.progress import report as report_progress
from flows.qa import MODES, build_pipeline, checker_model
from retrieval.pipeline import AskMode, QuestionAnsweringPipeline

RETRIEVERS: tuple[str, ...] = get_args(RetrieverName)
#: Per-question failures: the row records the error and the run goes on.
ANSWER_ERRORS = (LLMCallError, LLMOutputError, QueryError, TimeoutError)
#: Documents of the graph: id -> source (read-only, parameterised).
DOCUMENT_SOURCES = """
MATCH (d:Document) WHERE d.id IN $ids
RETURN d.id AS id, d.source AS source
"""


@dataclass(frozen=True)
class EvalMode:
    """An ask mode and, optionally, the passage retriever it runs with."""

    mode: str
    retriever: str | None = None

    @property
    def name(self) -> str:
        return f"{self.mode}:{self.retriever}" if self.retriever else self.mode

    @classmethod
    def parse(cls, text: str) -> EvalMode:
        mode, _, retriever = text.strip().partition(":")
        if mode not in MODES or (retriever and retriever not in RETRIEVERS):
            raise KgragError(f"unknown mode {text!r}", hint=(
                f"use MODE or MODE:RETRIEVER, modes {', '.join(MODES)}, retrievers "
                f"{', '.join(RETRIEVERS)} (e.g. rag, tog, rag:dense)"))
        return cls(mode, retriever or None)


class DocumentSources:
    """Document id -> source path, read from the graph once per document."""

    def __init__(self, graph: GraphStore) -> None:
        self.graph = graph
        self._source: dict[str, str] = {}

    def of(self, doc_ids: set[str]) -> list[str]:
        missing = sorted(doc_ids - set(self._source))
        if missing:
            rows = self.graph.read_query(DOCUMENT_SOURCES, {"ids": missing}).rows
            self._source.update({r["id"]: r["source"] or "" for r in rows})
        return sorted({self._source.get(d, d) for d in doc_ids})


def cited_documents(answer: Answer, graph: GraphStore) -> set[str]:
    """The documents the answer's sentences cite: through cited chunks, and through the
    chunks cited facts were extracted from."""
    doc_of = {e.id: e.doc_id for e in answer.evidence}
    fact_chunk = {f.id: f.triple.chunk_id for f in answer.facts}
    chunks = {fact_chunk.get(cid, cid) for s in answer.sentences for cid in s.citations}
    unknown = [cid for cid in chunks if cid not in doc_of]
    if unknown:
        doc_of.update({ch.id: ch.doc_id for ch in graph.get_chunks(unknown)})
    return {doc_of[cid] for cid in chunks if cid in doc_of}


def answer_row(answer: Answer, q: Question, mode: str, sources: DocumentSources,
               graph: GraphStore) -> Row:
    checked = [s for s in answer.sentences if s.verification.label != "unverified"]
    c = answer.cost
    row = Row(
        line=q.line, question=q.question, mode=mode, route=answer.mode,
        answer=answer.answer, short_answer=answer.short_answer,
        cannot_answer=answer.cannot_answer,
        cited_sources=sources.of(cited_documents(answer, graph)),
        retrieved_sources=sources.of({e.doc_id for e in answer.evidence}),
        grounding=None if answer.grounding is None else round(answer.grounding, 4),
        supported=(round(sum(s.verification.label == "supported" for s in checked)
                         / len(checked), 4) if checked else None),
        llm_calls=c.llm_calls, cached_calls=c.cached_calls, prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens, seconds=round(c.seconds, 3))
    return row.scored(q)


@task(name="answer-question", cache_policy=NO_CACHE)
def answer_question(pipeline: QuestionAnsweringPipeline, question: str, mode: str) -> Answer:
    """One question through the QA pipeline (the LLM client retries its own calls)."""
    return pipeline.ask(question, cast(AskMode, mode))


def pipeline_for(c: Components, m: EvalMode) -> QuestionAnsweringPipeline:
    """The QA pipeline of the settings, with the passage retriever `m` names."""
    if m.retriever is None or m.retriever == c.settings.retriever:
        return build_pipeline(c)
    settings = c.settings.model_copy(update={"retriever": m.retriever})
    return QuestionAnsweringPipeline.from_parts(
        settings, c.graph, c.embedder, c.llm, c.index(CHUNK_INDEX), c.index(ENTITY_INDEX),
        checker_llm=checker_model(c), retriever=c.retriever(m.retriever),
        pagerank=c.pagerank if m.retriever == "ppr" else None)


def settings_used(s: Settings) -> dict[str, Any]:
    """What the figures depend on, kept in the report."""
    keys = ("graph_backend", "llm_backend", "llm_model", "embed_model", "retriever",
            "qa_mode", "answer_method", "answer_format", "grounding", "grounding_threshold",
            "verify_max_rounds", "rag_top_k", "tog_width", "tog_depth", "llm_cache")
    return {k: getattr(s, k) for k in keys}


def start_report(questions_file: str, modes: list[str], name: str, resume: bool,
                 settings: Settings) -> EvaluationReport:
    """The unfinished report of this name to resume, or a new one."""
    directory = evaluations_dir(settings)
    if resume:
        for old in load_reports(directory, name, limit=1):
            if old.resumable():
                old.modes, old.questions_file, old.error = modes, questions_file, ""
                return old
    report = EvaluationReport(name=name, questions_file=questions_file, modes=modes)
    report.path = str(new_report_path(directory, name, report.started_at))
    return report


@flow(name="evaluate", log_prints=False, persist_result=False)
def evaluate(
    questions_file: str,
    modes: list[str] | None = None,
    limit: int | None = None,
    name: str = "",
    resume: bool = True,
    llm_cache: bool = False,
) -> dict[str, Any]:
    """Answer every question of `questions_file` in each of `modes` (default: the qa_mode
    setting) and score the answers; returns the report (also saved, with a plot).

    `limit`: the first N questions. `name`: of the report (default: the file's name).
    `resume`: continue the unfinished report of this name, if there is one. `llm_cache`:
    let answers come from the LLM response cache (off: every call costs what it costs).
    """
    log = get_run_logger()
    settings = get_settings()
    specs = [EvalMode.parse(m) for m in modes or [settings.qa_mode]]
    questions, bad = read_questions(Path(questions_file))
    questions = questions[:limit] if limit else questions
    if not questions:
        raise KgragError(f"no questions in {questions_file}" + (
            f" ({len(bad)} bad lines; line {bad[0].line}: {bad[0].error})" if bad else ""),
            hint='one JSON object a line: {"question": "...", "answer": "...", '
                 '"sources": ["file.md"]}')
    report = start_report(str(Path(questions_file).resolve()), [m.name for m in specs],
                          report_name(name or questions_file), resume, settings)
    report.bad_lines, report.questions, report.running = bad, len(questions), True
    report.settings = settings_used(settings) | {"llm_cache": llm_cache}
    for b in bad:
        log.warning("%s line %d: %s", questions_file, b.line, b.error)
    c = Components.from_settings(settings.model_copy(update={"llm_cache": llm_cache}))
    try:
        answer_all(c, report, questions, specs)
        report.finished_at = time.time()
    except BaseException as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report.running = False
        report.summarise()
        report.save()
        c.close()
    plot_report(report, Path(report.path).with_suffix(".png"))
    try:
        create_markdown_artifact(markdown=to_markdown(report), key="evaluation",
                                 description="evaluate run summary")
    except Exception as exc:  # an artifact is a courtesy; the report is saved anyway
        log.warning("could not store the summary artifact: %s", exc)
    log.info("evaluation done: %d questions x %d modes -> %s", len(questions), len(specs),
             report.path)
    return report.to_json()


def answer_all(c: Components, report: EvaluationReport, questions: list[Question],
               specs: list[EvalMode]) -> None:
    """Answer what the report does not hold yet, saving it after every answer; at the end
    the report holds exactly a row per question and mode, in order."""
    rows = {(r.question, r.mode): r for r in report.rows}
    sources = DocumentSources(c.graph)
    report.resumed_answers = 0
    for m in specs:
        pipeline: QuestionAnsweringPipeline | None = None
        stage = f"answers ({m.name})"
        report_progress(stage, 0, len(questions))
        for n, q in enumerate(questions, 1):
            old = rows.get((q.question, m.name))
            if old is not None and not old.error:
                rows[q.question, m.name] = old.scored(q)  # the gold may have changed
                report.resumed_answers += 1
            else:
                pipeline = pipeline or pipeline_for(c, m)
                rows[q.question, m.name] = answer_one(c, pipeline, q, m, sources)
                report.rows = list(rows.values())
                report.save()
            report_progress(stage, n, len(questions))
    report.rows = [rows[q.question, m.name] for m in specs for q in questions]


def answer_one(c: Components, pipeline: QuestionAnsweringPipeline, q: Question, m: EvalMode,
               sources: DocumentSources) -> Row:
    started = time.perf_counter()
    try:
        answer = answer_question(pipeline, q.question, m.mode)
    except ANSWER_ERRORS as exc:
        get_run_logger().warning("line %d (%s) failed: %s", q.line, m.name, exc)
        return Row(line=q.line, question=q.question, mode=m.name,
                   seconds=round(time.perf_counter() - started, 3),
                   error=f"{type(exc).__name__}: {exc}").scored(q)
    return answer_row(answer, q, m.name, sources, c.graph)


def to_markdown(report: EvaluationReport) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = [f"# Evaluation: {report.name}", "",
             f"{report.questions} questions from `{report.questions_file}`"
             + (f", {len(report.bad_lines)} bad lines" if report.bad_lines else "") + ".", "",
             "| mode | EM | F1 | support recall | citation precision | grounding | LLM calls/q "
             "| tokens/q | s/q |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, s in report.summary.items():
        tokens = (s["prompt_tokens"] or 0) + (s["completion_tokens"] or 0)
        lines.append(f"| {mode} | {cell(s['em'])} | {cell(s['f1'])} | "
                     f"{cell(s['support_recall'])} | {cell(s.get('citation_precision'))} | "
                     f"{cell(s['grounding'])} | "
                     f"{cell(s['llm_calls'])} | {tokens:.0f} | {cell(s['seconds'])} |")
    lines += [f"- line {b.line}: {b.error}" for b in report.bad_lines]
    return "\n".join(lines)
