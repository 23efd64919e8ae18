"""What a command needs, checked before it starts work: the local model is installed now
(with a progress bar) when it is missing, instead of failing after the corpus is embedded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from app.console import err
from core.model_files import ByteProgress
from core.settings import Settings


@contextmanager
def download_bar(label: str, quiet: bool = False) -> Iterator[ByteProgress]:
    """A transient bytes bar on stderr; yields the `on_bytes` callback that moves it."""
    bar = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                   console=err, transient=True, disable=quiet)
    with bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def local_model(settings: Settings, quiet: bool = False) -> None:
    """Install the local GGUF into `models_dir` if it is missing (known models only; with
    `models_install` off, or for a file named by `llm_model_path`, a missing one raises
    `ModelNotFoundError` with the fix). No-op for the OpenAI-compatible backend."""
    if settings.llm_backend != "local":
        return
    from core.model_files import ensure_model

    with download_bar("installing the local model", quiet) as on_bytes:
        ensure_model(settings, on_bytes=on_bytes)
