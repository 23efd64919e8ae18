"""`kgrag ingest`, `kgrag delete`: run the ingest flow with a progress bar; remove documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.console import err, out, print_json


def _say(message: str) -> None:
    err.print(f"[yellow]{message}[/]")


def _print_summary(s: dict[str, Any]) -> None:
    out.print(
        f"[bold]documents[/]: {s['documents_seen']} seen, {s['new']} new, "
        f"{s['changed']} changed, {s['resumed']} resumed, {s['unchanged']} unchanged, "
        f"{len(s['dropped'])} dropped, {len(s['failed'])} failed"
    )
    out.print(
        f"[bold]graph[/]: {s['chunks']} chunks written ({s['chunks_removed']} removed), "
        f"{s['entities']} entities, {s['relations_kept']} relations kept, "
        f"{s['relations_dropped']} dropped by the judge, {s['propositions']} propositions, "
        f"{len(s['failed_chunks'])} chunks failed extraction"
        + (f" ({s['retried_chunks']} failed in earlier runs were tried again)"
           if s.get("retried_chunks") else "")
    )
    if s["failed_chunks"]:
        out.print("[dim]chunks whose extraction failed are tried again by the next ingest of "
                  "the same files[/]")
    if s.get("triples_dropped"):
        out.print("[bold]triples dropped[/] (before the judge): " + ", ".join(
            f"{n} {why}" for why, n in sorted(s["triples_dropped"].items())))
    if s.get("llm"):
        u = s["llm"]
        out.print(f"[bold]LLM[/]: {u['calls']} calls ({u['cached_calls']} cached), "
                  f"{u['prompt_tokens']} prompt + {u['completion_tokens']} completion tokens")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in s["stage_seconds"].items())
    out.print(f"[bold]time[/]: {s['seconds']:.1f}s ({stages})")
    for title, key in (("failed", "failed"), ("dropped", "dropped"),
                       ("failed chunks", "failed_chunks")):
        for p in s[key][:20]:
            kind = f"{p['kind']}: " if p["kind"] else ""
            out.print(f"  [yellow]{title}[/] {p['where']}: {kind}{p['reason']}")
        if len(s[key]) > 20:
            out.print(f"  ... {len(s[key]) - 20} more {title} (see --json)")


def ingest(
    paths: list[str] = typer.Argument(..., help="Files, folders or globs (.txt .md .html "
                                      ".pdf .jsonl .csv)."),
    extract: bool | None = typer.Option(None, "--extract/--no-extract",
                                        help="Build the knowledge graph with the LLM "
                                        "(default: the `extract` setting)."),
    text_field: str = typer.Option("text", help="Text field of .jsonl / .csv records."),
    id_field: str = typer.Option("id", help="Id field of .jsonl / .csv records."),
    title_field: str = typer.Option("title", help="Title field of .jsonl / .csv records."),
    json_out: bool = typer.Option(False, "--json", help="The summary as one JSON document."),
    wait: bool = typer.Option(False, "--wait", help="When another ingest or delete writes "
                              "to the data dir, wait for it (default: exit with code 2)."),
) -> None:
    """Ingest a corpus: load, clean, chunk, embed, extract the graph. Re-runs skip unchanged
    documents and resume killed runs without duplicates. One ingest or delete writes to a
    data dir at a time."""
    missing = [p for p in paths if not any(ch in p for ch in "*?[") and not Path(p).exists()]
    if missing:
        err.print(f"[bold red]error:[/] no such file or folder: {', '.join(missing)}")
        raise typer.Exit(2)
    from core.settings import get_settings
    from core.writer_lock import writer_lock
    from flows.ingest import ingest_corpus
    from flows.prefect_server import prefect_api
    from flows.progress import watching

    settings = get_settings()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True, disable=json_out)
    with writer_lock(settings, "ingest", wait_s=None if wait else 0, notify=_say), bar:
        tasks: dict[str, Any] = {}

        def sink(stage: str, done: int, total: int) -> None:
            # total 0: not known yet (documents are counted as the corpus streams in)
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        with watching(sink), prefect_api(settings):
            summary = ingest_corpus(list(paths), extract=extract, text_field=text_field,
                                    id_field=id_field, title_field=title_field)
    if json_out:
        print_json(summary)
    else:
        _print_summary(summary)


def delete(
    doc_ids: list[str] = typer.Argument(..., help="Document ids (see `kgrag cypher "
                                        "\"MATCH (d:Document) RETURN d.id, d.source\"`)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    wait: bool = typer.Option(False, "--wait", help="When another ingest or delete writes "
                              "to the data dir, wait for it (default: exit with code 2)."),
) -> None:
    """Remove documents and exactly what only they supported (chunks, facts, vectors)."""
    from core.settings import get_settings
    from core.writer_lock import writer_lock
    from flows.delete import delete_documents

    with writer_lock(get_settings(), "delete", wait_s=None if wait else 0, notify=_say):
        report = delete_documents(list(doc_ids))
    if json_out:
        print_json(report)
    else:
        out.print(f"removed {report['documents']} documents, {report['chunks']} chunks, "
                  f"{report['relations']} relations, {report['propositions']} propositions, "
                  f"{report['entities']} entities")
        if report["not_found"]:
            out.print(f"[yellow]not found:[/] {', '.join(report['not_found'])}")
