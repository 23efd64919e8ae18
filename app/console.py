"""Shared terminal output: one rich console, errors without tracebacks, JSON to stdout."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from core.errors import KgragError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def fail(exc: KgragError, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {exc.message}")
    if exc.hint:
        err.print(f"[yellow]fix:[/] {exc.hint}")
    raise SystemExit(code)
