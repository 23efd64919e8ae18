"""The `kgrag` command line. Each command is a thin shell over the flows and stores."""

from __future__ import annotations

import os
import sys

import typer

from app import (
    cli_ask,
    cli_distill,
    cli_evaluate,
    cli_graph,
    cli_ingest,
    cli_schedule,
    cli_search,
    cli_services,
)
from app.cli_verify import verify as verify_claims
from app.console import fail, out, print_json
from app.lifecycle import exit_on_termination
from core.errors import KgragError
from core.settings import Settings, get_settings

app = typer.Typer(
    name="kgrag",
    help="Retrieval-augmented QA over knowledge graphs: ingest corpora, build the graph, "
    "ask questions, query with Cypher. Settings: KGRAG_* env vars or kgrag.toml.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cli_services.services, name="services")
app.add_typer(cli_services.models, name="models")
app.add_typer(cli_graph.graph, name="graph")
app.command("ingest")(cli_ingest.ingest)
app.command("delete")(cli_ingest.delete)
docs = typer.Typer(help="The documents in the graph.", no_args_is_help=True)
docs.command("list")(cli_ingest.docs_list)
app.add_typer(docs, name="docs")
app.command("cypher")(cli_graph.cypher)
app.command("search")(cli_search.search)
app.command("ask")(cli_ask.ask)
app.command("evaluate")(cli_evaluate.evaluate)
app.command("verify")(verify_claims)
app.add_typer(cli_schedule.schedule, name="schedule")
app.add_typer(cli_schedule.server, name="server")
app.command("serve")(cli_schedule.serve)
app.add_typer(cli_distill.distill, name="distill")


@app.command()
def doctor(
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Check every configured backend: versions, graph store, LLM, embedder, GPU, Prefect.

    Exit code 0 when all is healthy, 1 otherwise; each failure prints how to fix it.
    """
    from app.doctor import as_json, run_checks, versions

    s = get_settings()
    checks = run_checks(s)
    if json_out:
        print_json(as_json(s, checks))
    else:
        vers = ", ".join(f"{k} {v}" for k, v in versions().items())
        out.print(f"[dim]{vers}[/]")
        for c in checks:
            mark = "[green]ok  [/]" if c.ok else "[red]FAIL[/]"
            out.print(f"{mark} [bold]{c.name}[/]: {c.detail}")
            if not c.ok and c.hint:
                out.print(f"     [yellow]fix:[/] {c.hint}")
        healthy = all(c.ok for c in checks)
        out.print("[green]healthy[/]" if healthy else "[red]unhealthy[/]")
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)


@app.command()
def config(
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Show which config file and data dir are in use, and every setting: its value, where
    the value came from (env, the config file, default) and what it does.

    The config file is $KGRAG_CONFIG, else the nearest kgrag.toml in this folder or one
    above it; relative paths in it are relative to its folder."""
    import tomllib

    from core.settings import config_file

    s = get_settings()
    path = config_file()
    in_file: dict[str, object] = {}
    if path is not None and path.is_file():
        in_file = tomllib.loads(path.read_text(encoding="utf-8"))
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(s, name)
        if "password" in name or "api_key" in name:
            value = "***" if str(value.get_secret_value()) else ""
        env = f"KGRAG_{name.upper()}"
        source = "env" if env in os.environ else "file" if name in in_file else "default"
        rows.append({"setting": name, "env": env, "value": str(value), "source": source,
                     "description": field.description or ""})
    where = {"config_file": str(path) if path and path.is_file() else None,
             "data_dir": str(s.data_dir), "models_dir": str(s.models_dir)}
    if json_out:
        print_json(where | {"settings": rows})
        return
    from rich.table import Table

    found = where["config_file"] or (
        f"{path} (not found)" if path else "none (no kgrag.toml here or in a folder above)")
    out.print(f"[bold]config file[/]: {found}")
    out.print(f"[bold]data dir[/]: {s.data_dir}")
    out.print(f"[bold]models dir[/]: {s.models_dir}")
    table = Table("env", "value", "from", "description")
    for r in rows:
        table.add_row(r["env"], r["value"], r["source"], r["description"])
    out.print(table)


@app.command()
def ui(
    port: int = typer.Option(8501, help="Port on 127.0.0.1."),
    detach: bool = typer.Option(False, "--detach", help="Run in the background; "
                                "`kgrag services stop` stops it."),
    open_browser: bool = typer.Option(False, "--open", help="Open a browser tab."),
) -> None:
    """Start the Streamlit app on 127.0.0.1 (Ask, Graph explorer, Cypher, Ingest, Evaluation)."""
    from app import ui_server
    from app.lifecycle import run_foreground

    if detach:
        url = ui_server.start_detached(get_settings(), port)
        out.print(f"kgrag UI running at [bold]{url}[/] (stop: kgrag services stop)")
        return
    ui_server.check_port(port)
    out.print(f"kgrag UI on [bold]http://127.0.0.1:{port}[/] (Ctrl-C stops it)")
    # Streamlit stops with this process, even when it is killed (app.lifecycle).
    raise typer.Exit(run_foreground(ui_server.command(port, headless=not open_browser)))


#: Commands that show their own progress: Prefect's INFO lines ("Task run 'chunk-ede' -
#: Finished in state Completed()") stay off their console (still sent to the Prefect API).
_OWN_PROGRESS = ("ingest", "delete", "evaluate", "ask", "search", "docs", "cypher", "graph")


def quiet_libraries(argv: list[str] | None = None) -> None:
    """Library progress bars and chatter (transformers' "Loading weights", tqdm, the hub,
    Prefect's run log on commands that draw their own progress) stay out of kgrag's output;
    kgrag's own progress bars are rich, not tqdm. A variable the user set wins."""
    quiet = [("TQDM_DISABLE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
             ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")]
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in _OWN_PROGRESS:
        quiet.append(("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING"))
    for name, value in quiet:
        os.environ.setdefault(name, value)


def main() -> None:
    """Console entry point: user errors print a message and a fix, never a traceback."""
    quiet_libraries()
    # SIGTERM unwinds like Ctrl-C, so what kgrag started (Prefect's ephemeral API
    # server, the writer lock) is stopped and released on the way out.
    exit_on_termination()
    try:
        app()
    except KgragError as exc:
        fail(exc)
    except KeyboardInterrupt:
        out.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
