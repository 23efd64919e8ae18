"""Record files: one Document per JSONL line or CSV row, streamed.

A bad line or row is one `LoadError` (source `path#line`); the other records still load.
The id is the record's id field when it has one, else `relative/path#line` (which moves
when lines are inserted above it: give records ids if they will change).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from ingest.config import IngestConfig
from ingest.decode import LoadFailure, check_not_binary, detect_encoding
from ingest.documents import make_document
from ingest.records import LoadResult

_SNIFF_BYTES = 64 * 1024


class RecordFileReader:
    """Reads JSONL and CSV files with the configured text / id / title fields."""

    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        csv.field_size_limit(max(csv.field_size_limit(), config.max_file_bytes))

    def run(self, path: Path, key: str, source: str) -> Iterator[LoadResult]:
        """Records of one file; `key` is its path relative to the loaded root."""
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
            if not head.strip():
                yield LoadResult.failed(source, "empty file", "empty")
                return
            try:
                check_not_binary(head)
            except LoadFailure as exc:
                yield LoadResult.failed(source, exc.reason, exc.kind)
                return
            f.seek(0)
            is_csv = path.suffix.lower() == ".csv"
            rows = self._csv_rows(f, head) if is_csv else self._jsonl_rows(f)
            yield from self._limit_errors(self._documents(rows, path, key, source), source)

    # --- parsing ---------------------------------------------------------------------

    def _jsonl_rows(self, f: BinaryIO) -> Iterator[tuple[int, Mapping[str, Any] | LoadFailure]]:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as exc:
                yield number, LoadFailure("undecodable", f"line {number} is not UTF-8 ({exc})")
                continue
            except json.JSONDecodeError as exc:
                yield number, LoadFailure("bad_record", f"line {number} is not JSON: {exc}")
                continue
            if not isinstance(record, dict):
                found = type(record).__name__
                yield (
                    number,
                    LoadFailure("bad_record", f"line {number} is a JSON {found}, not an object"),
                )
                continue
            yield number, record

    def _csv_rows(
        self, f: BinaryIO, head: bytes
    ) -> Iterator[tuple[int, Mapping[str, Any] | LoadFailure]]:
        encoding = _csv_encoding(head)
        text = io.TextIOWrapper(f, encoding=encoding, newline="")
        reader = csv.DictReader(text, delimiter=self.config.csv_delimiter)
        try:
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            yield 0, LoadFailure("bad_record", f"unreadable CSV header: {exc}")
            return
        if self.config.text_field not in header:
            columns = ", ".join(header) or "none"
            yield (
                0,  # the whole file
                LoadFailure(
                    "missing_field",
                    f"no '{self.config.text_field}' column (columns: {columns}); set the text "
                    "field to the column holding the text",
                ),
            )
            return
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                yield (
                    start,
                    LoadFailure(
                        "undecodable", f"line {start}: not {encoding} ({exc.reason}); rest skipped"
                    ),
                )
                return
            except csv.Error as exc:
                yield start, LoadFailure("bad_record", f"line {start}: {exc}")
                continue
            if None in row:  # more cells than header columns
                yield (
                    start,
                    LoadFailure(
                        "bad_record", f"line {start}: more cells than the header has columns"
                    ),
                )
                continue
            # CSV has no null: an empty cell is a missing value (a JSON "" is a blank one)
            yield start, {k: v for k, v in row.items() if v != ""}

    # --- records to documents --------------------------------------------------------

    def _documents(
        self,
        rows: Iterator[tuple[int, Mapping[str, Any] | LoadFailure]],
        path: Path,
        key: str,
        source: str,
    ) -> Iterator[LoadResult]:
        for number, row in rows:
            where = f"{source}#{number}" if number else source
            if isinstance(row, LoadFailure):
                yield LoadResult.failed(where, row.reason, row.kind)
            else:
                yield self._document(row, number, path, key, where)

    def _document(
        self, row: Mapping[str, Any], number: int, path: Path, key: str, where: str
    ) -> LoadResult:
        cfg = self.config
        text = row.get(cfg.text_field)
        if not isinstance(text, str) or not text.strip():
            if text is None or isinstance(text, str):
                problem = "is missing" if text is None else "is empty"
            else:
                problem = f"is a {type(text).__name__}, not text"
            reason = f"line {number}: field '{cfg.text_field}' {problem}"
            return LoadResult.failed(where, reason, "missing_field")
        if len(text.encode("utf-8")) > cfg.max_file_bytes:
            reason = f"line {number}: text over the size limit ({cfg.max_file_bytes:,} bytes)"
            return LoadResult.failed(where, reason, "too_large")
        record_id = row.get(cfg.id_field)
        has_id = isinstance(record_id, str | int) and str(record_id).strip() != ""
        title = row.get(cfg.title_field)
        if title is None:  # no title field: the id names the record
            title = str(record_id) if has_id else ""
        # a blank title stays blank: it is what the record says
        title = title.strip() if isinstance(title, str) else ""
        extra = {
            k: v
            for k, v in row.items()
            if k not in (cfg.text_field, cfg.id_field, cfg.title_field)
            and isinstance(v, str | int | float | bool)
        }
        metadata = {
            "format": "csv" if path.suffix.lower() == ".csv" else "jsonl",
            "path": str(path.resolve()),
            "line": number,
            "record_id": record_id if has_id else None,
            "fields": extra,
        }
        doc_key = str(record_id).strip() if has_id else f"{key}#{number}"
        doc = make_document(doc_key, text, where, title, metadata)
        if not doc.text:
            reason = f"line {number}: field '{cfg.text_field}' has no text once cleaned"
            return LoadResult.failed(where, reason, "empty")
        return LoadResult.loaded(doc)

    def _limit_errors(self, results: Iterator[LoadResult], source: str) -> Iterator[LoadResult]:
        """Let through the first N bad records of a file, then count the rest."""
        errors = 0
        for result in results:
            if result.error is not None:
                errors += 1
                if errors > self.config.max_record_errors_per_file:
                    continue
            yield result
        hidden = errors - self.config.max_record_errors_per_file
        if hidden > 0:
            yield LoadResult.failed(
                source, f"{hidden} more bad records not listed ({errors} in all)", "bad_record"
            )


def _csv_encoding(head: bytes) -> str:
    """UTF-8 (with or without BOM) if the first bytes decode as such, else detected."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return detect_encoding(head) or "cp1252"
