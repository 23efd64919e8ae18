"""Evaluation page: the latest `kgrag evaluate` reports side by side (a table of the modes
and the plot of each), a form that starts a run, and the benchmark results (bench/out)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, get_args

import streamlit as st

from app.ui_common import page
from core.settings import RetrieverName, Settings, get_settings
from flows.evaluation_report import (
    EvaluationReport,
    evaluations_dir,
    load_reports,
    read_questions,
    report_name,
)
from flows.qa import MODES

REPO = Path(__file__).resolve().parent.parent
BENCH_DIRS = [Path.cwd() / "bench" / "out", REPO / "bench" / "out"]
SAMPLE_QUESTIONS = REPO / "ingest" / "samples" / "questions.jsonl"
MODE_CHOICES = [*MODES, *(f"{m}:{r}" for m in ("rag", "tog") for r in get_args(RetrieverName))]
#: Reports shown side by side at most.
SIDE_BY_SIDE = 4


def bench_dir() -> Path | None:
    return next((d for d in BENCH_DIRS if d.is_dir() and any(d.glob("*.json"))), None)


def _table(data: Any) -> list[dict[str, Any]] | None:
    for key in ("rows", "results", "table"):
        if isinstance(data, dict) and isinstance(data.get(key), list):
            return [r for r in data[key] if isinstance(r, dict)]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    return None


# ------------------------------------------------------------------------------ reports


def label(r: EvaluationReport) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at))
    state = "" if r.finished_at else " (running)" if r.running and not r.resumable() \
        else " (unfinished)"
    return f"{r.name}, {when}{state}"


def mode_table(r: EvaluationReport) -> list[dict[str, Any]]:
    """A row per mode: the scores and the cost per question."""
    rows = []
    for mode, s in r.summary.items():
        tokens = None if s["prompt_tokens"] is None else \
            round(s["prompt_tokens"] + s["completion_tokens"])
        rows.append({"mode": mode, "EM": s["em"], "F1": s["f1"],
                     "support recall": s["support_recall"], "grounding": s["grounding"],
                     "LLM calls": s["llm_calls"], "tokens": tokens, "s": s["seconds"],
                     "errors": s["errors"]})
    return rows


def answer_table(r: EvaluationReport) -> list[dict[str, Any]]:
    return [{"mode": a.mode, "line": a.line, "question": a.question,
             "answer": a.error or a.short_answer or a.answer,
             "gold": " | ".join(a.gold_answers), "EM": a.em, "F1": a.f1,
             "support recall": a.support_recall, "cited": ", ".join(
                 Path(s).name for s in a.cited_sources), "grounding": a.grounding,
             "calls": a.llm_calls, "s": a.seconds} for a in r.rows]


def show_report(r: EvaluationReport) -> None:
    st.markdown(f"**{r.name}**: {r.questions} questions, modes {', '.join(r.modes)}")
    st.dataframe(mode_table(r), hide_index=True, width="stretch")
    plot = Path(r.path).with_suffix(".png")
    if plot.is_file():
        st.image(str(plot))
    if r.bad_lines:
        st.caption(f"{len(r.bad_lines)} lines not scored: " + "; ".join(
            f"line {b.line}: {b.error}" for b in r.bad_lines[:5]))
    if r.error:
        st.caption(f"The run stopped: {r.error} (the next run of this name resumes it)")
    with st.expander(f"Answers ({len(r.rows)})"):
        st.dataframe(answer_table(r), hide_index=True, width="stretch")


def reports_section(settings: Settings) -> None:
    reports = load_reports(evaluations_dir(settings))
    if not reports:
        st.caption("No evaluation yet: start one here, or run `kgrag evaluate "
                   "QUESTIONS.jsonl --mode rag --mode tog`.")
        return
    by_label = {label(r): r for r in reports}
    chosen = st.multiselect("Reports, side by side", list(by_label),
                            default=list(by_label)[:2], max_selections=SIDE_BY_SIDE)
    for col, key in zip(st.columns(max(1, len(chosen))), chosen, strict=False):
        with col:
            show_report(by_label[key])


# ------------------------------------------------------------------------------ a run


def run_evaluation(questions_file: Path, modes: list[str], limit: int, name: str
                   ) -> dict[str, Any]:
    from flows.evaluate import evaluate
    from flows.progress import watching

    bars: dict[str, Any] = {}

    def sink(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = st.progress(0.0, text=stage)
        bars[stage].progress(min(done / total, 1.0) if total else 0.0,
                             text=f"{stage}: {done}/{total}")

    with watching(sink):
        return evaluate(str(questions_file), modes, limit=limit or None, name=name)


def questions_to_run(settings: Settings, path: str, upload: Any) -> Path | None:
    if upload is not None:
        target = settings.data_dir / "uploads" / "evaluations" / \
            f"{time.strftime('%Y%m%d-%H%M%S')}-{report_name(upload.name)}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(upload.getvalue())
        return target
    return Path(path).expanduser() if path.strip() else None


def run_form(settings: Settings) -> None:
    with st.form("evaluate"):
        st.markdown("**Run an evaluation** on the graph of this data dir")
        left, right = st.columns(2)
        path = left.text_input("Questions file (JSONL) on this machine", value=str(
            SAMPLE_QUESTIONS) if SAMPLE_QUESTIONS.is_file() else "")
        upload = right.file_uploader("... or upload one", type=["jsonl"])
        modes = left.multiselect("Modes", MODE_CHOICES, default=["rag"])
        limit = right.number_input("Questions (0: all)", min_value=0, value=0, step=1)
        st.caption('One JSON object a line: {"question": "...", "answer": "...", '
                   '"sources": ["file.md"]}; answer and sources are optional.')
        start = st.form_submit_button("Start evaluation", type="primary")
    if not start:
        return
    questions_file = questions_to_run(settings, path, upload)
    if questions_file is None or not modes:
        st.warning("Name or upload a questions file and pick at least one mode.")
        return
    _, bad = read_questions(questions_file)
    for b in bad:
        st.warning(f"line {b.line}: {b.error} (not scored)")
    name = report_name(upload.name if upload is not None else questions_file.name)
    with st.status("Evaluating ...", expanded=True) as status:
        report = run_evaluation(questions_file, modes, int(limit), name)
        status.update(label=f"Evaluation finished: {report['path']}", state="complete")


# ------------------------------------------------------------------------------ benchmarks


def benchmarks_section() -> None:
    where = bench_dir()
    if where is None:
        st.info("No benchmark results yet. Run the scripts in `bench/` (see bench/README.md); "
                "they write JSON and plots to bench/out/.")
        return
    st.caption(f"Results from {where}")
    for result in sorted(where.glob("*.json")):
        with st.expander(result.stem, expanded=True):
            data = json.loads(result.read_text())
            rows = _table(data)
            if rows:
                st.dataframe(rows, width="stretch")
            else:
                st.json(data, expanded=False)
            plot = result.with_suffix(".png")
            if plot.exists():
                st.image(str(plot))


@page
def render() -> None:
    st.title("Evaluation")
    settings = get_settings()
    questions, benchmarks = st.tabs(["Question answering", "Benchmarks"])
    with questions:
        run_form(settings)  # first: a run that finishes shows below with the others
        reports_section(settings)
    with benchmarks:
        benchmarks_section()
