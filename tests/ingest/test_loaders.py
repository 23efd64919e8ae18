"""Each loader on real small files: text, title, source, stable ids, sha256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.models import Document
from ingest import formats
from ingest.config import IngestConfig
from ingest.documents import document_id, documents_from_texts
from ingest.loaders import CorpusLoader
from ingest.normalise import text_sha256
from ingest.records import split_results
from tests.ingest.pdf import minimal_pdf

PROSE = "Knowledge graphs store facts as triples. Each triple links two entities."


def load(inputs: object, config: IngestConfig | None = None) -> list[Document]:
    docs, errors = split_results(CorpusLoader(config).run(inputs))  # type: ignore[arg-type]
    assert errors == []
    return docs


def test_txt_file_gets_id_from_relative_path_and_sha_of_text(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("  " + PROSE + "\r\n\r\n\r\n\r\nEnd.  ")

    [doc] = load(tmp_path)

    assert doc.id == document_id("sub/notes.txt")
    assert doc.text == PROSE + "\n\nEnd."
    assert doc.sha256 == text_sha256(doc.text)
    assert doc.title == "notes"
    assert doc.source == str(tmp_path / "sub" / "notes.txt")
    assert doc.metadata["format"] == "text"


def test_changed_file_keeps_its_id_and_gets_a_new_sha(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(PROSE)
    [before] = load(tmp_path)
    path.write_text(PROSE + " A new sentence.")
    [after] = load(tmp_path)

    assert after.id == before.id
    assert after.sha256 != before.sha256


def test_markdown_title_from_first_heading_or_front_matter(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Intro line.\n\n## Graph Basics ##\n\n" + PROSE)
    (tmp_path / "b.md").write_text(
        "---\ntitle: 'From Front Matter'\ntags: [x]\n---\n# H1\n" + PROSE
    )
    (tmp_path / "c.md").write_text("Setext Title\n============\n\n" + PROSE)

    a, b, c = load(tmp_path)

    assert a.title == "Graph Basics"
    assert b.title == "From Front Matter"
    assert b.text.startswith("# H1")  # front matter is not content
    assert c.title == "Setext Title"


def test_html_main_text_without_scripts_and_title(tmp_path: Path) -> None:
    html = f"""<html><head><title>Graph Page</title><style>p {{color: red}}</style></head>
    <body><script>var tracking = "SECRET_SCRIPT";</script>
    <article><h1>Graphs</h1><p>{PROSE}</p><p>Relations carry predicates.</p></article>
    </body></html>"""
    (tmp_path / "page.html").write_text(html)

    [doc] = load(tmp_path)

    assert PROSE in doc.text
    assert "Relations carry predicates." in doc.text
    assert "SECRET_SCRIPT" not in doc.text and "color" not in doc.text
    assert doc.title == "Graph Page"


def test_html_that_trafilatura_rejects_falls_back_to_tag_strip(tmp_path: Path) -> None:
    (tmp_path / "tiny.htm").write_text("<div>Tiny <b>page</b> text.</div><script>x()</script>")

    [doc] = load(tmp_path)

    assert doc.text == "Tiny page text."
    assert doc.metadata["extractor"] == "tag-strip"


def test_tag_strip_fallback_handles_html_without_closing_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "_trafilatura_text", lambda html: "")
    (tmp_path / "open.html").write_text(
        "<html><head><title>T</title><style>x</style><body><h2>Sub</h2><p>Body text.</p>"
    )

    [doc] = load(tmp_path)

    assert doc.text == "Sub\n\nBody text." and doc.title == "T"


def test_pdf_pages_joined_with_page_offsets(tmp_path: Path) -> None:
    pages = ["Knowledge graphs store facts as triples.", "Entities are linked by relations."]
    (tmp_path / "paper.pdf").write_bytes(minimal_pdf(pages, title="Graph Paper"))

    [doc] = load(tmp_path)

    assert doc.text == "\n\n".join(pages)
    assert doc.title == "Graph Paper"
    assert doc.metadata["page_offsets"] == [[1, 0], [2, len(pages[0]) + 2]]
    second = doc.metadata["page_offsets"][1][1]
    assert doc.text[second:].startswith("Entities")


def test_jsonl_one_document_per_line_with_fields(tmp_path: Path) -> None:
    lines = [
        {"doc": "q1", "body": PROSE, "name": "First", "lang": "en"},
        {"doc": 7, "body": "Second record text here."},
        {"body": "A record without an id."},
        {"doc": "q4", "body": "A record whose title is blank.", "name": " "},
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    cfg = IngestConfig(text_field="body", id_field="doc", title_field="name")

    first, second, third, fourth = load(tmp_path / "data.jsonl", cfg)

    assert first.id == document_id("q1") and first.title == "First"
    assert first.source.endswith("data.jsonl#1")
    assert first.metadata["fields"] == {"lang": "en"}
    assert second.id == document_id("7") and second.title == "7"
    assert third.id == document_id("data.jsonl#3")
    # no title field: the id stands in; a blank one stays blank (an id is no title for
    # the extractor, which resolves pronouns with it)
    assert fourth.title == ""


def test_csv_rows_with_configurable_columns(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text(
        'key,content,title\nr1,"Multi-line\ncell text.",Row One\nr2,Plain row.,\n'
    )
    cfg = IngestConfig(text_field="content", id_field="key")

    r1, r2 = load(tmp_path, cfg)

    assert r1.id == document_id("r1") and r1.title == "Row One"
    assert r1.text == "Multi-line\ncell text."
    assert r2.title == "r2"
    assert r2.source.endswith("rows.csv#4")  # the line its row starts on


def test_csv_in_cp1252_loads(tmp_path: Path) -> None:
    (tmp_path / "fr.csv").write_bytes("id,text\n1,Le café crème déjà là.\n".encode("cp1252"))

    [doc] = load(tmp_path)

    assert doc.text == "Le café crème déjà là."


def test_glob_and_list_of_paths(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "deep").mkdir(parents=True)
    (tmp_path / "corpus" / "deep" / "a.md").write_text(PROSE)
    (tmp_path / "corpus" / "b.txt").write_text(PROSE + " B.")
    (tmp_path / "other.txt").write_text(PROSE + " Other.")

    globbed = load(str(tmp_path / "corpus" / "**" / "*.md"))
    listed = load([tmp_path / "other.txt", tmp_path / "corpus", tmp_path / "corpus" / "b.txt"])

    assert [d.id for d in globbed] == [document_id("deep/a.md")]
    # b.txt is named twice (in its folder and alone) and loaded once
    assert [d.id for d in listed] == [
        document_id("other.txt"),
        document_id("b.txt"),
        document_id("deep/a.md"),
    ]


def test_hidden_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref: main")
    (tmp_path / ".notes.txt").write_text(PROSE)
    (tmp_path / "seen.txt").write_text(PROSE)

    assert [d.title for d in load(tmp_path)] == ["seen"]


def test_documents_from_texts_api() -> None:
    docs = documents_from_texts(
        ["Caf\u00e9\u00a0 one.", "Two."], ids=["x", "y"], titles=["One", "Two"]
    )

    assert [d.id for d in docs] == [document_id("x"), document_id("y")]
    assert docs[0].text == "Café one." and docs[0].title == "One"
    assert docs[0].source == "api#x"
    # without ids the key is the content
    a, b = documents_from_texts(["same text", "same text"])
    assert a.id == b.id


def test_documents_from_texts_checks_lengths() -> None:
    with pytest.raises(ValueError, match="ids has 1 items for 2 texts"):
        documents_from_texts(["a", "b"], ids=["x"])
