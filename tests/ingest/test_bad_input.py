"""Bad input: each bad file gives its own clear error and the good files still load."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ingest import loaders
from ingest.config import IngestConfig
from ingest.formats import Extracted
from ingest.loaders import CorpusLoader
from ingest.records import LoadError, split_results
from tests.ingest.pdf import minimal_pdf

GOOD = "Knowledge graphs store facts as triples. Each triple links two entities."


def _errors_by_name(errors: list[LoadError]) -> dict[str, LoadError]:
    return {Path(e.source.split("#")[0]).name + _line(e.source): e for e in errors}


def _line(source: str) -> str:
    return "#" + source.split("#")[1] if "#" in source else ""


def _random_bytes(n: int, low: int = 0, high: int = 255) -> bytes:
    rng = random.Random(7)
    return bytes(rng.randint(low, high) for _ in range(n))


def test_mixed_folder_every_bad_file_has_its_error_and_good_files_load(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(GOOD)
    (tmp_path / "good.md").write_text("# Title\n\n" + GOOD)
    (tmp_path / "good.pdf").write_bytes(minimal_pdf([GOOD]))
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100))
    (tmp_path / "controls.md").write_bytes(_random_bytes(2000, 1, 31))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\t\n")
    (tmp_path / "big.txt").write_text(GOOD * 100)
    (tmp_path / "garbage.txt").write_bytes(_random_bytes(1500, 128, 255))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "records.jsonl").write_text(
        json.dumps({"id": "r1", "text": GOOD})
        + "\n{not json at all\n"
        + json.dumps(["a", "list"])
        + "\n"
        + json.dumps({"id": "r4", "body": "no text field"})
        + "\n"
        + json.dumps({"id": "r5", "text": GOOD + " Five."})
        + "\n"
    )
    (tmp_path / "rows.csv").write_text(f"id,text\nc1,{GOOD}\nc2,\nc3,{GOOD} Three.\n")

    cfg = IngestConfig(max_file_bytes=2000)
    docs, errors = split_results(CorpusLoader(cfg).run(tmp_path))
    by_name = _errors_by_name(errors)

    loaded = sorted(Path(d.source.split("#")[0]).name + _line(d.source) for d in docs)
    assert loaded == [
        "good.md",
        "good.pdf",
        "good.txt",
        "records.jsonl#1",
        "records.jsonl#5",
        "rows.csv#2",
        "rows.csv#4",
    ]
    expected_kinds = {
        "binary.txt": "binary",
        "controls.md": "binary",
        "empty.txt": "empty",
        "blank.md": "empty",
        "big.txt": "too_large",
        "garbage.txt": "undecodable",
        "broken.pdf": "corrupt",
        "image.png": "unsupported",
        "records.jsonl#2": "bad_record",
        "records.jsonl#3": "bad_record",
        "records.jsonl#4": "missing_field",
        "rows.csv#3": "missing_field",
    }
    assert {name: e.kind for name, e in by_name.items()} == expected_kinds
    assert "NUL byte" in by_name["binary.txt"].reason
    assert "over the limit of 2,000" in by_name["big.txt"].reason
    assert "line 2 is not JSON" in by_name["records.jsonl#2"].reason
    assert "field 'text' is missing" in by_name["records.jsonl#4"].reason
    assert "corrupt PDF" in by_name["broken.pdf"].reason
    assert all(e.reason for e in errors)


def test_latin1_text_is_decoded_not_refused(tmp_path: Path) -> None:
    text = "Le café crème à la française est déjà très apprécié. Où êtes-vous allé?"
    (tmp_path / "fr.txt").write_bytes(text.encode("cp1252"))
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    (tmp_path / "utf16.txt").write_bytes(GOOD.encode("utf-16"))

    docs, errors = split_results(CorpusLoader().run(tmp_path))

    assert errors == []
    assert sorted(d.text for d in docs) == sorted([text, GOOD, GOOD])


def test_missing_path_and_empty_glob_are_errors(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text(GOOD)

    results = list(
        CorpusLoader().run([tmp_path / "nope", str(tmp_path / "*.pdf"), tmp_path / "ok.txt"])
    )
    docs, errors = split_results(results)

    assert [e.kind for e in errors] == ["not_found", "not_found"]
    assert len(docs) == 1


def test_csv_without_the_text_column_names_the_columns(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,body\n1,hello\n")

    _, [error] = split_results(CorpusLoader().run(tmp_path))

    assert error.kind == "missing_field"
    assert error.source == str(tmp_path / "t.csv")  # the file, not a line of it
    assert "no 'text' column (columns: id, body)" in error.reason


def test_many_bad_records_are_counted_not_listed(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("oops\n" * 30 + json.dumps({"text": GOOD}) + "\n")

    docs, errors = split_results(
        CorpusLoader(IngestConfig(max_record_errors_per_file=5)).run(tmp_path)
    )

    assert len(docs) == 1
    assert len(errors) == 6
    assert errors[-1].reason == "25 more bad records not listed (30 in all)"


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    (tmp_path / "ok.txt").write_text(GOOD)

    docs, [error] = split_results(CorpusLoader().run(tmp_path))

    assert error.kind == "unreadable" and "cannot read" in error.reason
    assert len(docs) == 1


def test_a_parser_crash_on_one_file_is_that_files_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(data: bytes) -> Extracted:
        raise KeyError("parser bug")

    monkeypatch.setitem(loaders._EXTRACTORS, "markdown", crash)
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.txt").write_text(GOOD)

    docs, [error] = split_results(CorpusLoader().run(tmp_path))

    assert error.kind == "corrupt" and "KeyError" in error.reason
    assert [d.title for d in docs] == ["b"]
