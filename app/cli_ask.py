"""`kgrag ask`: answer a question with citations, reasoning paths, verdicts and cost."""

from __future__ import annotations

import os
import time
from enum import StrEnum
from pathlib import Path

import typer
from rich.markup import escape

from app.console import err, out, print_json
from core.answer import Answer, ReasoningPath


class AskModeChoice(StrEnum):
    auto = "auto"
    rag = "rag"
    tog = "tog"
    direct = "direct"


_MARK = {"supported": "[green]supported[/]", "unsupported": "[red]unsupported[/]",
         "unverified": "[dim]unverified[/]"}


def markers(answer: Answer) -> dict[str, str]:
    """Source id -> the marker shown to the model and to the user ("1", "T1")."""
    table = {e.id: e.marker for e in answer.evidence}
    table.update({f.id: f.marker for f in answer.facts})
    return table


def path_line(path: ReasoningPath) -> str:
    """ "Marie Curie -married-> Pierre Curie <-worked with- Henri Becquerel"."""
    triples = path.triples
    if not triples:
        return ""
    first = triples[0]
    # The path starts at the end of the first triple that the second does not continue from.
    shared = {triples[1].subject_id, triples[1].object_id} if len(triples) > 1 else set()
    current = first.object_id if first.subject_id in shared else first.subject_id
    line = first.object if current == first.object_id else first.subject
    for t in triples:
        if t.subject_id == current:
            line += f" -{t.predicate}-> {t.object}"
            current = t.object_id
        else:
            line += f" <-{t.predicate}- {t.subject}"
            current = t.subject_id
    return line


def print_answer(answer: Answer) -> None:
    mark = markers(answer)
    out.print(f"[bold]Q:[/] {escape(answer.question)}")
    out.print(f"[dim]mode {answer.mode} ({escape(answer.route)})[/]")
    out.print()
    if answer.short_answer:
        out.print(f"[bold]Answer:[/] {escape(answer.short_answer)}")
    for s in answer.sentences:
        cites = "".join(f"[{mark[c]}]" for c in s.citations if c in mark)
        v = s.verification
        score = f" {v.score:.2f}" if v.score is not None else ""
        if v.label == "unsupported" and not cites:
            cites = "(no supporting evidence)"
        out.print(f"{escape(s.text)} [cyan]{escape(cites)}[/]  {_MARK[v.label]}{score}")
    if answer.evidence or answer.facts:
        out.print("\n[bold]Sources[/]")
        for e in answer.evidence:
            preview = " ".join(e.text.split())[:160]
            out.print(f"  [cyan]\\[{e.marker}][/] {escape(preview)}"
                      f"{'...' if len(e.text) > 160 else ''} [dim]({e.id}, {e.doc_id}, "
                      f"{e.source}, {e.score:.2f})[/]")
        for f in answer.facts:
            src = mark.get(f.triple.chunk_id)
            where = f" [dim](from [{src}])[/]" if src else ""
            out.print(f"  [cyan]\\[{f.marker}][/] {escape(f.triple.text())}{where}")
    if answer.candidates:
        out.print("\n[bold]Candidates[/] (SuRe)")
        for cand in answer.candidates:
            verdict = "[green]valid[/]" if cand.valid else "[red]rejected[/]"
            out.print(f"  {escape(cand.answer)}: {verdict}, {cand.wins} pairwise wins "
                      f"[dim]{escape(cand.summary)}[/]")
    if answer.paths:
        out.print("\n[bold]Reasoning paths[/]")
        for i, p in enumerate(answer.paths, 1):
            out.print(f"  {i}. {escape(path_line(p))} [dim](score {p.score:.2f})[/]")
    rounds = ", ".join(f"{r.action}: {r.diagnosis}" for r in answer.rounds)
    if rounds:
        weakest = (f", weakest sentence {answer.grounding:.2f}"
                   if answer.grounding is not None else "")
        out.print(f"\n[bold]Verification[/]: support {answer.support:.0%}{weakest}; "
                  f"diagnosis {answer.diagnosis} ({escape(rounds)})")
    c = answer.cost
    out.print(f"[bold]Cost[/]: {c.llm_calls} LLM calls ({c.cached_calls} cached), "
              f"{c.prompt_tokens} prompt + {c.completion_tokens} completion tokens, "
              f"LLM {c.llm_seconds:.1f}s, total {c.seconds:.1f}s")


def ask(
    question: str = typer.Argument(..., help="The question, in quotes."),
    mode: AskModeChoice | None = typer.Option(
        None, "--mode", help="auto: the router decides; rag: chunk retrieval; tog: "
        "Think-on-Graph; direct: no retrieval (default: the qa_mode setting)."),
    sure: bool = typer.Option(
        False, "--sure", help="SuRe: short answer candidates, a cited summary for each, "
        "checked and ranked; prints the short answer and every candidate (more LLM calls; "
        "default: the answer_method setting)."),
    json_out: bool = typer.Option(False, "--json", help="The answer as one JSON document."),
    show_timings: bool = typer.Option(
        False, "--timings", help="Print where the seconds went: process start and imports, "
        "opening the stores, loading the models, planning, retrieval, the LLM's prompt "
        "evaluation / decoding / sampling, verification (always in --json's cost.timings)."),
) -> None:
    """Answer a question from the graph and the documents: each sentence cites its sources
    and is checked against them; prints reasoning paths, verdicts and cost."""
    if not question.strip():
        err.print('[bold red]error:[/] the question is empty\n[yellow]fix:[/] kgrag ask '
                  '"Who shared the 1903 Nobel Prize in Physics with Marie Curie?"')
        raise typer.Exit(2)
    from core import timing

    started = process_start()
    with timing.timings() as record:
        timing.add("python start + CLI imports", time.time() - started)
        with timing.stage("imports"):
            from core.settings import get_settings
            from flows.qa import ask as ask_question

        if not json_out:
            err.print("[dim]thinking...[/]")
        settings = get_settings()
        if sure:
            settings = settings.model_copy(update={"answer_method": "sure"})
        from app import preflight

        preflight.local_model(settings, quiet=json_out)
        answer = ask_question(question, mode.value if mode else None, settings)
    total = time.time() - started
    answer.cost.timings = whole_run(record, total)
    if json_out:
        print_json(answer.to_json() | {"total_seconds": round(total, 3)})
        return
    print_answer(answer)
    if show_timings:
        print_timings(answer.cost.timings, total)


def process_start() -> float:
    """When this process started (epoch seconds), from /proc; now where /proc is missing."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in
                    Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def whole_run(record: dict[str, float], total: float) -> dict[str, float]:
    """The stages of the run, and `other` for the seconds no stage claimed: they sum to
    `total`."""
    stages = {k: round(v, 4) for k, v in record.items()}
    stages["other"] = round(max(0.0, total - sum(stages.values())), 4)
    return stages


def print_timings(stages: dict[str, float], total: float) -> None:
    out.print(f"\n[bold]Timings[/] (total {total:.2f}s)")
    for name, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        share = seconds / total if total else 0.0
        out.print(f"  {name:<32}{seconds:>8.2f}s {share:>6.1%}")
