"""`kgrag evaluate`: run the evaluate flow on a questions file with a progress bar; a table
of the answers per mode, then the modes side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.console import err, out, print_json

#: Answers listed per mode; the rest are in the report (and --json).
MAX_ROWS = 20


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "[dim]-[/]"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(title: str, text: list[str], numbers: list[str]) -> Table:
    """Numbers whole, on the right; the text columns share what width is left, each cut
    to one line (the report has them whole)."""
    table = Table(title=title, title_justify="left", expand=len(text) > 1)
    for name in text:
        table.add_column(name, no_wrap=True, overflow="ellipsis",
                         ratio=1 if len(text) > 1 else None)
    for name in numbers:
        table.add_column(name, justify="right", no_wrap=True, min_width=max(len(name), 4))
    return table


def print_answers(report: dict[str, Any]) -> None:
    for mode in report["modes"]:
        rows = [r for r in report["rows"] if r["mode"] == mode]
        table = _table(f"mode {mode}", ["question", "answer"],
                       ["EM", "F1", "recall", "grounding", "calls", "s"])
        for r in rows[:MAX_ROWS]:
            said = f"[red]{escape(r['error'])}[/]" if r["error"] else \
                escape(" ".join((r["short_answer"] or r["answer"]).split()))
            table.add_row(escape(r["question"]), said, _cell(r["em"], 0),
                          _cell(r["f1"]), _cell(r["support_recall"]), _cell(r["grounding"]),
                          str(r["llm_calls"]), f"{r['seconds']:.1f}")
        out.print(table)
        if len(rows) > MAX_ROWS:
            out.print(f"[dim]... {len(rows) - MAX_ROWS} more answers in the report[/]")


def print_summary(report: dict[str, Any]) -> None:
    errors = any(s["errors"] for s in report["summary"].values())
    table = _table(f"{report['name']}: {report['questions']} questions", ["mode"],
                   ["EM", "F1", "recall", "cite P", "grounding", "calls/q", "tokens/q", "s/q",
                    *(["errors"] if errors else [])])
    for mode, s in report["summary"].items():
        tokens = "-" if s["prompt_tokens"] is None else \
            f"{s['prompt_tokens']:.0f}+{s['completion_tokens']:.0f}"
        table.add_row(mode, _cell(s["em"], 3), _cell(s["f1"], 3),
                      _cell(s["support_recall"], 3), _cell(s.get("citation_precision"), 3),
                      _cell(s["grounding"], 3), _cell(s["llm_calls"], 1), tokens,
                      _cell(s["seconds"], 1),
                      *([str(s["errors"])] if errors else []))
    out.print(table)
    out.print("[dim]EM, F1: of the short answer; recall: share of the gold source files "
              "the answer cites; cite P: share of the cited files that are gold sources; "
              "grounding: the verifier's score of its weakest sentence; "
              "tokens: prompt+completion[/]")
    if report["resumed_answers"]:
        out.print(f"[dim]{report['resumed_answers']} answers resumed from the unfinished "
                  "report[/]")
    out.print(f"report: {report['path']} (plot: {Path(report['path']).with_suffix('.png')})")


def print_bad_lines(path: Path, bad: list[Any]) -> None:
    for b in bad:
        err.print(f"[yellow]{escape(str(path))} line {b.line}:[/] {escape(b.error)} "
                  "[dim](not scored)[/]", soft_wrap=True)  # one line each, for grep


def _checked_modes(modes: list[str]) -> list[str]:
    """An unknown mode is a usage error, found before anything is loaded."""
    from core.errors import KgragError
    from flows.evaluate import EvalMode

    for m in modes:
        try:
            EvalMode.parse(m)
        except KgragError as exc:
            raise typer.BadParameter(f"{exc.message}; {exc.hint}") from None
    return modes


def evaluate(
    questions_file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="JSON Lines: one {\"question\": ..., "
        "\"answer\": ..., \"sources\": [...]} object a line."),
    mode: list[str] = typer.Option(
        [], "--mode", "-m", callback=_checked_modes, help="A mode to evaluate, repeatable: "
        "auto, rag, tog, direct, optionally with the passage retriever, e.g. rag:dense, "
        "rag:ppr (default: the qa_mode setting)."),
    limit: int | None = typer.Option(None, "--limit", min=1,
                                     help="Only the first N questions."),
    name: str = typer.Option("", "--name", help="Name of the report (default: the "
                             "questions file's name)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new report even when an "
                               "unfinished one of this name could be resumed."),
    cache: bool = typer.Option(False, "--cache", help="Let answers come from the LLM "
                               "response cache (faster re-runs; cached calls cost no tokens "
                               "or model time, so the modes' costs no longer compare)."),
    json_out: bool = typer.Option(False, "--json", help="The report as one JSON document."),
) -> None:
    """Answer a file of questions in each mode and score the answers: exact match and F1
    of the short answer against the gold answer, support recall (share of the gold source
    files the answer cites), grounding (the verifier's score of the weakest sentence; '-'
    when nothing was checked), LLM calls, tokens and seconds per question.

    The questions file is JSON Lines, one object a line, e.g.:

    {"question": "Where was Marie Curie born?", "answer": "Warsaw",
    "sources": ["marie-curie.md"]}

    "answer" (a string, or a list of acceptable answers) and "sources" (file
    names of the documents that support the answer) are optional. A malformed
    line is reported with its number and skipped; the others are scored.

    The report is saved as DATA_DIR/evaluations/<time>-<name>.json, with a
    .png plot, after every answer: a run that was cut off resumes where it
    stopped. The UI's Evaluation page shows the latest reports side by side.
    """
    from core.settings import get_settings
    from flows.evaluate import evaluate as evaluate_flow
    from flows.evaluation_report import read_questions
    from flows.prefect_server import prefect_api
    from flows.progress import watching

    questions, bad = read_questions(questions_file)
    print_bad_lines(questions_file, bad)
    if not questions:
        err.print(f"[bold red]error:[/] no questions in {escape(str(questions_file))}\n"
                  '[yellow]fix:[/] one JSON object a line: {"question": "...", "answer": '
                  '"...", "sources": ["file.md"]}')
        raise typer.Exit(2)
    settings = get_settings()
    from app import preflight

    preflight.local_model(settings, quiet=json_out)  # before any question is answered
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True, disable=json_out)
    tasks: dict[str, Any] = {}

    def sink(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total or None)
        bar.update(tasks[stage], completed=done, total=total or None)

    with bar, watching(sink), prefect_api(settings):
        report = evaluate_flow(str(questions_file), list(mode) or None, limit=limit,
                               name=name, resume=not fresh, llm_cache=cache)
    if json_out:
        print_json(report)
        return
    print_answers(report)
    print_summary(report)
