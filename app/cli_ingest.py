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
        + (f", {len(s['removed'])} removed (file gone)" if s.get("removed") else "")
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
                       ("failed chunks", "failed_chunks"), ("removed", "removed")):
        for p in s.get(key, [])[:20]:
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
    remove_missing: bool | None = typer.Option(
        None, "--remove-missing/--keep-missing", help="Delete the documents whose files "
        "were removed from the given folders (default: the remove_missing_files setting, "
        "off)."),
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
    if settings.extract if extract is None else extract:
        from app import preflight

        preflight.local_model(settings, quiet=json_out)
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
                                    id_field=id_field, title_field=title_field,
                                    remove_missing=remove_missing)
    if json_out:
        print_json(summary)
    else:
        _print_summary(summary)


def delete(
    targets: list[str] = typer.Argument(..., help="Document ids, files (every document "
                                        "read from one: a JSONL file's records too), folders "
                                        "or sources, as `kgrag docs list` shows them."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    wait: bool = typer.Option(False, "--wait", help="When another ingest or delete writes "
                              "to the data dir, wait for it (default: exit with code 2)."),
) -> None:
    """Remove documents and exactly what only they supported (chunks, facts, vectors).

    Exit code 1 when a target names no document (the others are still removed)."""
    from core.settings import get_settings
    from core.writer_lock import writer_lock
    from flows.delete import delete_documents, resolve_targets

    report: dict[str, Any]
    if dry_run:
        found, not_found = resolve_targets(list_documents(), targets)
        report = {"removed": [{"id": d.id, "source": d.source} for d in found],
                  "not_found": not_found, "dry_run": True}
    else:
        with writer_lock(get_settings(), "delete", wait_s=None if wait else 0, notify=_say):
            report = delete_documents(list(targets))
    if json_out:
        print_json(report)
    else:
        verb = "would remove" if dry_run else "removed"
        for d in report["removed"]:
            out.print(f"  {verb} {d['source']} [dim]({d['id']})[/]")
        if not dry_run:
            out.print(f"removed {report['documents']} documents, {report['chunks']} chunks, "
                      f"{report['relations']} relations, {report['propositions']} "
                      f"propositions, {report['entities']} entities")
        if report["not_found"]:
            out.print(f"[yellow]not found:[/] {', '.join(report['not_found'])} "
                      "[dim](kgrag docs list shows ids and sources)[/]")
    if report["not_found"]:
        raise typer.Exit(1)


def list_documents() -> list[Any]:
    from core.settings import get_settings
    from kg.store import make_graph_store

    store = make_graph_store(get_settings())
    try:
        return store.list_documents()
    finally:
        store.close()


def docs_list(
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    contains: str = typer.Option("", "--contains", help="Only sources or titles containing "
                                 "this text (case-insensitive)."),
) -> None:
    """List the documents in the graph: source, title, chunks, entities, when ingested."""
    from dataclasses import asdict

    docs = list_documents()
    needle = contains.casefold()
    docs = [d for d in docs if needle in d.source.casefold() or needle in d.title.casefold()]
    if json_out:
        print_json([asdict(d) for d in docs])
        return
    from rich.table import Table

    table = Table("title", "chunks", "entities", "ingested at")
    # Sources and ids are what `kgrag delete` takes: folded, never cut short with "...".
    table.add_column("source", overflow="fold")
    table.add_column("id", overflow="fold", no_wrap=False)
    for d in docs:
        when = d.ingested_at.replace("T", " ").removesuffix("+00:00") or "-"
        title = d.title if d.done else f"{d.title} [yellow](unfinished)[/]"
        table.add_row(title, str(d.chunks), str(d.entities), when, d.source, d.id)
    out.print(table)
    out.print(f"{len(docs)} documents (remove with: kgrag delete PATH_OR_ID)")
