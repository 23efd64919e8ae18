"""`kgrag search`: ranked passages for a question, with no LLM call."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from app.console import err, fail, out, print_json
from core.errors import KgragError


class RetrieverChoice(StrEnum):
    dense = "dense"
    bm25 = "bm25"
    hybrid = "hybrid"
    ppr = "ppr"


def print_search(data: dict[str, Any]) -> None:
    out.print(f"[bold]Q:[/] {escape(data['question'])}  [dim]({data['retriever']}, "
              f"{data['seconds'] * 1000:.0f} ms)[/]")
    if data.get("note"):
        out.print(f"[yellow]{escape(data['note'])}[/]")
    if data.get("seeds"):
        seeds = ", ".join(f"{s['name']} ({s['via']} {s['similarity']:.2f}, "
                          f"{s['passages']} passages)" for s in data["seeds"][:8])
        out.print(f"[dim]linked entities:[/] {escape(seeds)}")
    if not data["hits"]:
        out.print("no passages: the index is empty (kgrag ingest PATH first)")
    for i, h in enumerate(data["hits"], 1):
        text = " ".join(h["text"].split())
        preview = text[:200] + ("..." if len(text) > 200 else "")
        out.print(f"{i:>2}. [cyan]{h['score']:.4g}[/] {escape(preview)} "
                  f"[dim]({h['chunk_id']}, {h['doc_id']})[/]")


def read_questions(path: Path) -> list[tuple[int, str | None, str]]:
    """(line number, question or None, error) per non-blank line of a JSONL file whose
    lines are {"question": "..."} (other keys are passed through)."""
    rows: list[tuple[int, str | None, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KgragError(f"cannot read {path}: {exc}",
                         hint='a UTF-8 JSONL file, one {"question": "..."} per line') from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            q = record.get("question") if isinstance(record, dict) else None
        except json.JSONDecodeError as exc:
            rows.append((n, None, f"line {n}: not JSON ({exc.msg})"))
            continue
        if not isinstance(q, str) or not q.strip():
            rows.append((n, None, f'line {n}: no "question" string'))
        else:
            rows.append((n, q, ""))
    return rows


def search(
    question: str | None = typer.Argument(None, help="The question, in quotes."),
    retriever: RetrieverChoice | None = typer.Option(
        None, "--retriever", "-r", help="dense: embedding cosine; bm25: lexical; hybrid: "
        "dense + BM25 (reciprocal rank fusion); ppr: Personalized PageRank over the entity "
        "graph (default: the retriever setting)."),
    k: int = typer.Option(5, "--k", "-k", min=1, help="How many passages."),
    questions: Path | None = typer.Option(
        None, "--questions", help='A JSONL file of {"question": ...} lines: all searched in '
        "one process, one JSON line out per question, in order."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Rank passages for a question with no LLM call: the passages, their scores, the
    question's linked entities and the seeds PageRank started from."""
    from flows.components import Components
    from flows.search import search_passages

    if (question is None) == (questions is None):
        fail(KgragError("give a question or --questions FILE, not both or neither",
                        hint='kgrag search "Who directed the Radium Institute?"'))
    name = retriever.value if retriever else None
    c = Components()
    try:
        if questions is not None:
            failed = 0
            for n, q, problem in read_questions(questions):
                if q is None:
                    failed += 1
                    sys.stdout.write(json.dumps({"line": n, "error": problem}) + "\n")
                    continue
                try:
                    data = search_passages(q, name, k, c)
                except KgragError as exc:
                    failed += 1
                    data = {"line": n, "question": q, "error": str(exc)}
                sys.stdout.write(json.dumps({"line": n, **data}, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            if failed:
                err.print(f"[yellow]{failed} line(s) had errors (see their \"error\")[/]")
            return
        assert question is not None
        try:
            data = search_passages(question, name, k, c)
        except KgragError as exc:
            fail(exc)
        if json_out:
            print_json(data)
        else:
            print_search(data)
    finally:
        c.close()
