"""A newcomer's path through documents: `kgrag docs list`, `kgrag delete PATH_OR_ID`, a
folder re-ingested with its deleted files removed, and commands that check what they need
before they start work. Real FalkorDB, real embedder and spaCy; no LLM (--no-extract)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.errors import ModelNotFoundError
from tests.app.test_cli import kgrag
from tests.corpus import write_corpus

pytestmark = pytest.mark.services


def docs(*extra: str) -> list[dict[str, Any]]:
    code, out, _ = kgrag("docs", "list", "--json", *extra)
    assert code == 0
    return list(json.loads(out))


def ingest(*args: str) -> dict[str, Any]:
    code, out, err = kgrag("ingest", *args, "--no-extract", "--json")
    assert code == 0, err
    return dict(json.loads(out))


def test_docs_list_shows_each_document_with_its_size_and_when(kgrag_env: Path,
                                                             tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    before = datetime.now(UTC).replace(microsecond=0)
    ingest(str(corpus))
    rows = docs()
    assert [Path(r["path"]).name for r in rows] == ["curie.txt", "danube.txt", "einstein.md"]
    for r in rows:
        assert Path(r["path"]).is_absolute() and Path(r["path"]).parent == corpus.resolve()
        assert r["chunks"] >= 1 and r["done"] is True
        assert before <= datetime.fromisoformat(r["ingested_at"]) <= datetime.now(UTC)
        assert r["id"].startswith("doc_")
    by_name = {Path(r["path"]).name: r for r in rows}
    # The mention layer (spaCy, no LLM) linked the people and places of each document.
    assert by_name["curie.txt"]["entities"] >= 2 and by_name["danube.txt"]["entities"] >= 2
    assert [Path(r["path"]).name for r in docs("--contains", "DANUBE")] == ["danube.txt"]

    code, out, _ = kgrag("docs", "list")
    assert code == 0 and "3 documents" in out and "kgrag delete" in out


def test_delete_by_file_folder_or_id_and_dry_run(kgrag_env: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    write_corpus(corpus / "more", {"rhine.txt": "The Rhine is a river that flows through "
                                   "Basel, Strasbourg and Cologne to the North Sea."})
    ingest(str(corpus))
    assert len(docs()) == 4

    code, out, _ = kgrag("delete", str(corpus / "more"), "--dry-run", "--json")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] and len(report["removed"]) == 1
    assert len(docs()) == 4  # a dry run removes nothing

    code, out, _ = kgrag("delete", str(corpus / "more"), "--json")  # a folder
    assert code == 0 and json.loads(out)["documents"] == 1
    assert "rhine.txt" not in {Path(r["path"]).name for r in docs()}

    einstein = next(r for r in docs() if r["path"].endswith("einstein.md"))
    code, out, _ = kgrag("delete", einstein["id"], str(corpus / "curie.txt"),
                         "no-such-doc", "--json")
    report = json.loads(out)
    assert code == 1  # one target named nothing; the others are still removed
    assert report["not_found"] == ["no-such-doc"] and report["documents"] == 2
    assert {Path(r["path"]).name for r in docs()} == {"danube.txt"}
    # What only those documents supported went too: no chunk is left without its document.
    code, out, _ = kgrag("cypher", "MATCH (c:Chunk) WHERE NOT (c)-[:PART_OF]->(:Document) "
                         "RETURN count(c) AS n", "--json")
    assert json.loads(out)["rows"] == [{"n": 0}]

    code, out, _ = kgrag("delete", str(tmp_path / "nowhere"))
    assert code == 1 and "not found" in out and "kgrag docs list" in out


def test_records_of_a_jsonl_file_go_with_the_file(kgrag_env: Path, tmp_path: Path) -> None:
    data = tmp_path / "records.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"Record {i} is about the "
                                          f"city of Lyon and the river Rhone, part {i}."})
                              for i in range(3)) + "\n")
    ingest(str(data))
    assert len(docs()) == 3
    code, out, _ = kgrag("delete", str(data), "--json")
    assert code == 0 and json.loads(out)["documents"] == 3 and docs() == []


def test_reingest_with_remove_missing_deletes_documents_whose_files_are_gone(
        kgrag_env: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    ingest(str(corpus))
    (corpus / "danube.txt").unlink()

    summary = ingest(str(corpus))  # default: off, the document stays
    assert summary["removed"] == [] and len(docs()) == 3

    summary = ingest(str(corpus), "--remove-missing")
    assert [Path(p["where"]).name for p in summary["removed"]] == ["danube.txt"]
    assert summary["unchanged"] == 2 and summary["chunks_removed"] >= 1
    assert {Path(r["path"]).name for r in docs()} == {"curie.txt", "einstein.md"}


def test_ingest_with_extraction_stops_before_work_when_the_model_is_missing(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    monkeypatch.delenv("KGRAG_LLM_MODEL_PATH", raising=False)  # the test's own empty models dir
    from core.settings import get_settings

    get_settings.cache_clear()
    with pytest.raises(ModelNotFoundError, match="is missing") as info:  # main() prints it
        kgrag("ingest", str(corpus), "--extract")
    assert "kgrag models install" in info.value.hint
    # The flow checks too (the UI and schedules start it without the CLI).
    from flows.ingest import ingest_corpus

    with pytest.raises(ModelNotFoundError):
        ingest_corpus([str(corpus)], extract=True)
    assert docs() == []  # nothing was loaded, embedded or written first
