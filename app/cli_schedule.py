"""`kgrag schedule ...`, `kgrag serve`, `kgrag server ...`: scheduled ingest on Prefect."""

from __future__ import annotations

import contextlib

import typer

from app.console import out, print_json
from core.settings import get_settings

schedule = typer.Typer(help="Scheduled ingest of folders (Prefect deployments of the ingest "
                       "flow). Needs a Prefect server: `kgrag server start`.",
                       no_args_is_help=True)
server = typer.Typer(help="A local Prefect server on 127.0.0.1 for this data dir (SQLite).",
                     no_args_is_help=True)


@schedule.command("add")
def schedule_add(
    sources: list[str] = typer.Option(..., "--source", help="Folder, file or glob to ingest; "
                                      "repeat for more. Stored as an absolute path."),
    cron: str | None = typer.Option(None, help='Cron schedule, e.g. "*/15 * * * *".'),
    interval: float | None = typer.Option(None, help="Or: seconds between runs."),
    name: str | None = typer.Option(None, help="Schedule name (default: ingest-<folder>)."),
    extract: bool | None = typer.Option(None, "--extract/--no-extract",
                                        help="Build the knowledge graph with the LLM "
                                        "(default: the `extract` setting where it runs)."),
    remove_missing: bool | None = typer.Option(
        None, "--remove-missing/--keep-missing", help="Each run also deletes the documents "
        "whose files were removed from the sources (default: the remove_missing_files "
        "setting where it runs, off)."),
    timezone: str = typer.Option("UTC", help="Timezone of the cron schedule (IANA name)."),
    pool: str | None = typer.Option(None, help="Run on this Prefect work pool's workers "
                                    "instead of `kgrag serve` (see infra/worker.sh)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Ingest SOURCE on a schedule. Runs pick up new and changed files only."""
    from flows.schedules import add_schedule

    s = add_schedule(sources, cron=cron, interval_s=interval, name=name, extract=extract,
                     remove_missing=remove_missing, pool=pool, timezone=timezone,
                     settings=get_settings())
    if json_out:
        print_json(s.to_json())
        return
    runs_by = f"workers of pool {s.pool!r}" if s.pool else "`kgrag serve`"
    out.print(f"[green]scheduled[/] [bold]{s.name}[/]: {', '.join(s.sources)}, {s.schedule}; "
              f"runs by {runs_by}")


@schedule.command("list")
def schedule_list(
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Every scheduled ingest: name, sources, schedule, paused, who runs it."""
    from flows.schedules import list_schedules

    items = list_schedules(get_settings())
    if json_out:
        print_json([s.to_json() for s in items])
        return
    if not items:
        out.print("no schedules (add one: kgrag schedule add --source PATH --cron ...)")
        return
    from rich.table import Table

    table = Table("name", "sources", "schedule", "extract", "state", "runs by")
    for s in items:
        table.add_row(s.name, "\n".join(s.sources), s.schedule,
                      "setting" if s.extract is None else str(s.extract).lower(),
                      "[yellow]paused[/]" if s.paused else "[green]active[/]",
                      f"pool {s.pool}" if s.pool else "kgrag serve")
    out.print(table)


@schedule.command("pause")
def schedule_pause(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """No new runs until resumed."""
    from flows.schedules import pause_schedule

    pause_schedule(name, get_settings())
    out.print(f"[yellow]paused[/] {name}")


@schedule.command("resume")
def schedule_resume(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Runs start again on the schedule."""
    from flows.schedules import resume_schedule

    resume_schedule(name, get_settings())
    out.print(f"[green]resumed[/] {name}")


@schedule.command("remove")
def schedule_remove(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Delete the schedule and its pending runs (ingested data stays)."""
    from flows.schedules import remove_schedule

    remove_schedule(name, get_settings())
    out.print(f"removed {name}")


def serve(
    poll: float | None = typer.Option(None, help="Seconds between polls for due runs "
                                      "(default 10)."),
) -> None:
    """Run the scheduled ingests of this machine until Ctrl-C (Prefect's serve).

    Runs go one at a time, each in a subprocess with this shell's KGRAG_* settings.
    """
    from flows.prefect_server import require_server
    from flows.serve import serve_schedules

    s = get_settings()
    api = require_server(s)
    out.print(f"serving kgrag schedules from {api.url} ({api.source}); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        serve_schedules(s, poll_s=poll)
    out.print("stopped")


@server.command("start")
def server_start(
    port: int = typer.Option(4200, help="Port on 127.0.0.1."),
    ui: bool = typer.Option(True, "--ui/--no-ui", help="Serve Prefect's dashboard too."),
) -> None:
    """Start a Prefect server on 127.0.0.1 with its database under the data dir."""
    from flows.prefect_server import LocalPrefectServer

    st = LocalPrefectServer(get_settings(), ui=ui).start(port)
    out.print(f"[green]Prefect server running[/] at {st.url} (pid {st.pid}), "
              f"database {st.database}")
    out.print("kgrag commands with this data dir use it. For the prefect CLI and other "
              "shells:")
    out.print(f"  export PREFECT_API_URL={st.url}")


@server.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server (schedules and run history stay in its database)."""
    from flows.prefect_server import LocalPrefectServer

    stopped = LocalPrefectServer(get_settings()).stop()
    out.print("[green]stopped[/]" if stopped else "not running")


@server.command("status")
def server_status(
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Is the local Prefect server running, and which Prefect API kgrag uses."""
    from flows.prefect_server import LocalPrefectServer, resolve_api

    s = get_settings()
    st = LocalPrefectServer(s).status()
    api = resolve_api(s)
    if json_out:
        print_json({**st.to_json(), "api_url": api.url, "api_source": api.source})
    else:
        if st.running:
            out.print(f"Prefect server [green]running[/] at {st.url} (pid {st.pid})")
        else:
            out.print("local Prefect server [yellow]not running[/] "
                      "(start: kgrag server start)")
        out.print(f"kgrag uses: {api.url or 'the ephemeral API'} ({api.source})")
    raise typer.Exit(0 if st.running else 3)
