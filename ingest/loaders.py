"""Load a corpus: folders (recursive), globs and files of .txt, .md, .html, .pdf, .jsonl, .csv.

    >>> from ingest.records import split_results
    >>> docs, errors = split_results(CorpusLoader().run(["corpus/", "notes/*.md"]))

Every input yields `LoadResult`s: a Document, or a `LoadError` naming the file (or
`file#line`) and why. One bad file never stops the others.

Ids: a file's document id is `content_id("doc", path relative to the folder given)`
(for a glob, relative to its fixed leading folder; for a file named directly, its file
name). The id does not depend on the content, so a changed file replaces its old version.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ingest.config import IngestConfig
from ingest.decode import LoadFailure
from ingest.documents import make_document
from ingest.formats import (
    Extracted,
    extract_html,
    extract_markdown,
    extract_pdf,
    extract_plain,
)
from ingest.records import LoadResult
from ingest.tabular import RecordFileReader

#: File suffix -> format name. Anything else is reported as `unsupported`.
FORMATS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
_EXTRACTORS: dict[str, Callable[[bytes], Extracted]] = {
    "text": extract_plain,
    "markdown": extract_markdown,
    "html": extract_html,
    "pdf": extract_pdf,
}
_GLOB_CHARS = frozenset("*?[")
log = logging.getLogger(__name__)

PathInput = str | os.PathLike[str]


class CorpusLoader:
    """Turns paths, folders and globs into Documents (or per-file errors)."""

    def __init__(self, config: IngestConfig | None = None) -> None:
        self.config = config or IngestConfig()
        self._records = RecordFileReader(self.config)

    def run(self, inputs: PathInput | Iterable[PathInput]) -> Iterator[LoadResult]:
        """Load every file the inputs name, each file once, in a stable order."""
        items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
        seen: set[Path] = set()
        for item in items:
            for found in self._expand(os.fspath(item)):
                if isinstance(found, LoadResult):
                    yield found
                    continue
                path, key = found
                resolved = path.resolve()
                if resolved in seen:
                    continue
                seen.add(resolved)
                yield from self.load_file(path, key)

    def load_file(self, path: Path, key: str) -> Iterator[LoadResult]:
        """Documents of one file; `key` is its stable name (path relative to its root)."""
        source = str(path)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            kinds = ", ".join(sorted(FORMATS))
            yield LoadResult.failed(
                source,
                f"unsupported file type '{path.suffix or path.name}' (reads {kinds})",
                "unsupported",
            )
            return
        try:
            if fmt in ("jsonl", "csv"):  # streamed: the size limit applies per record
                yield from self._records.run(path, key, source)
            else:
                yield self._read_document(path, key, fmt)
        except LoadFailure as exc:
            yield LoadResult.failed(source, exc.reason, exc.kind)
        except OSError as exc:
            yield LoadResult.failed(source, f"cannot read: {exc.strerror or exc}", "unreadable")
        except Exception as exc:  # a parser bug on one file must not stop the corpus
            log.warning("unexpected failure loading %s", source, exc_info=True)
            reason = f"cannot extract text: {type(exc).__name__}: {exc}"
            yield LoadResult.failed(source, reason, "corrupt")

    def _read_document(self, path: Path, key: str, fmt: str) -> LoadResult:
        size = path.stat().st_size
        if size > self.config.max_file_bytes:
            raise LoadFailure(
                "too_large",
                f"file is {size:,} bytes, over the limit of {self.config.max_file_bytes:,} "
                "(IngestConfig.max_file_bytes)",
            )
        extracted = _EXTRACTORS[fmt](path.read_bytes())
        metadata = {"format": fmt, "path": str(path.resolve()), "bytes": size}
        title = extracted.title or path.stem
        doc = make_document(key, extracted.text, str(path), title, metadata | extracted.metadata)
        if not doc.text:
            raise LoadFailure("empty", "no text once cleaned")
        return LoadResult.loaded(doc)

    # --- inputs to files ---------------------------------------------------------------

    def _expand(self, item: str) -> Iterator[tuple[Path, str] | LoadResult]:
        """(file, key) pairs of one input, or the error that it names nothing."""
        path = Path(item)
        if path.is_dir():
            for file in _walk(path):
                yield file, file.relative_to(path).as_posix()
        elif path.is_file():
            yield path, path.name
        elif _GLOB_CHARS & set(item):
            base = _glob_base(item)
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            files = [p for p in matches if p.is_file()]
            if not files:
                yield LoadResult.failed(item, "no file matches this pattern", "not_found")
            for file in files:
                yield file, _relative_key(file, base)
        else:
            yield LoadResult.failed(item, "no such file or folder", "not_found")


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`, sorted, skipping hidden files and folders (.git, .DS_Store)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that contain no wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _relative_key(file: Path, base: Path) -> str:
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.as_posix()
