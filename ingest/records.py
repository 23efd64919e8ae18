"""Records that the ingest stages pass along besides `core` Documents and Chunks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import model_validator

from core.models import Document, Record

LoadErrorKind = Literal[
    "not_found",  # the path or glob names nothing
    "unsupported",  # a file type kgrag does not read
    "unreadable",  # the operating system refused to read it (permissions, I/O error)
    "empty",  # no bytes, or no text once extracted
    "too_large",  # over IngestConfig.max_file_bytes
    "binary",  # NUL bytes / control bytes: not a text file
    "undecodable",  # not UTF-8 and no character set decodes it cleanly
    "corrupt",  # a PDF (or other container) that its parser cannot open
    "bad_record",  # a JSONL line that is not a JSON object, a CSV row that does not parse
    "missing_field",  # a record without its text field
]


class LoadError(Record):
    """Why one file (or one record, `source` = `path#line`) was not loaded."""

    source: str
    reason: str
    kind: LoadErrorKind = "unreadable"

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class LoadResult(Record):
    """One outcome of a loader: a document, or the error that stopped it."""

    source: str
    document: Document | None = None
    error: LoadError | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LoadResult:
        if (self.document is None) == (self.error is None):
            raise ValueError("a LoadResult holds either a document or an error")
        return self

    @classmethod
    def loaded(cls, document: Document) -> LoadResult:
        return cls(source=document.source, document=document)

    @classmethod
    def failed(cls, source: str, reason: str, kind: LoadErrorKind) -> LoadResult:
        return cls(source=source, error=LoadError(source=source, reason=reason, kind=kind))


DropReason = Literal[
    "duplicate_id",
    "empty",
    "too_few_words",
    "symbol_ratio",
    "non_alphabetic",
    "repeated_lines",
    "few_punctuated_lines",
    "exact_duplicate",
    "near_duplicate",
]


class Dropped(Record):
    """A loaded document that cleaning removed, and why (e.g. `near_duplicate`)."""

    doc_id: str
    source: str
    reason: DropReason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.source} ({self.doc_id}): {self.reason}: {self.detail}"


class CleanResult(Record):
    """Output of `DocumentCleaner.run`: documents kept (cleaned), documents dropped."""

    kept: list[Document]
    dropped: list[Dropped]


def split_results(results: Iterable[LoadResult]) -> tuple[list[Document], list[LoadError]]:
    """Separate loaded documents from errors, keeping their order."""
    results = list(results)
    docs = [r.document for r in results if r.document is not None]
    errors = [r.error for r in results if r.error is not None]
    return docs, errors
