"""Crash-safe file writes: write a temporary file, fsync it, then rename it into place.

A rename within one directory is atomic on POSIX, so a reader (or the next run after a
crash) sees either the old file or the complete new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, flush it to disk and rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(data), encoding="utf-8")

    write_atomic(path, write)


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
