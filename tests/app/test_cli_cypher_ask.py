"""`kgrag cypher --ask`: the model writes the query, the read-only path runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.llm.testing import ScriptedChatModel
from flows.components import Components
from tests.app.test_cli import kgrag, kgrag_process
from tests.conftest import LOCAL_MODEL
from tests.corpus import write_corpus

pytestmark = pytest.mark.services


@pytest.fixture
def corpus_graph(kgrag_env: Path, tmp_path: Path) -> Path:
    """The three test documents, ingested without extraction (no model call)."""
    code, _, _ = kgrag("ingest", str(write_corpus(tmp_path / "corpus")), "--no-extract",
                       "--json")
    assert code == 0
    return kgrag_env


def fake_model_writes(monkeypatch: pytest.MonkeyPatch, *replies: str) -> ScriptedChatModel:
    """Every Components.llm is a scripted fake model answering `replies` in turn."""
    from core.llm.factory import make_chat_model

    fake = ScriptedChatModel(replies)
    monkeypatch.setattr(Components, "llm", property(
        lambda self: self.__dict__.setdefault(
            "_scripted", make_chat_model(self.settings, backend=fake))))
    return fake


def test_ask_yes_json_runs_the_written_query(corpus_graph: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    query = "MATCH (d:Document) RETURN d.title AS title ORDER BY title"
    fake = fake_model_writes(monkeypatch, f"```cypher\n{query};\n```")
    code, out, _ = kgrag("cypher", "--ask", "Which documents are there?", "--yes", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["question"] == "Which documents are there?"
    assert result["query"] == query
    assert [r["title"] for r in result["rows"]] == ["Albert Einstein", "curie", "danube"]
    # the schema the model was shown comes from this graph
    assert "Document (3)" in fake.requests[0].messages[0]["content"]


def test_ask_show_prints_the_query_only(corpus_graph: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_model_writes(monkeypatch, "MATCH (c:Chunk) RETURN count(c) AS chunks")
    code, out, _ = kgrag("cypher", "--ask", "How many chunks?", "--show")
    assert code == 0
    assert out.strip() == "MATCH (c:Chunk) RETURN count(c) AS chunks"


def test_ask_without_a_terminal_does_not_wait_for_an_answer(
        corpus_graph: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_model_writes(monkeypatch, "MATCH (c:Chunk) RETURN count(c) AS chunks")
    code, out, err = kgrag("cypher", "--ask", "How many chunks?")
    assert code == 1
    assert "--yes" in err and out == ""


def test_a_written_write_is_refused(corpus_graph: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake_model_writes(monkeypatch, "MATCH (d:Document) DETACH DELETE d",
                      "MATCH (d:Document) DETACH DELETE d")
    with pytest.raises(Exception, match="would write"):
        kgrag("cypher", "--ask", "Delete everything", "--yes")
    _, out, _ = kgrag("graph", "stats", "--json")
    assert json.loads(out)["nodes"]["Document"] == 3


def test_query_and_ask_together_is_a_usage_error(corpus_graph: Path) -> None:
    proc = kgrag_process("cypher", "MATCH (n) RETURN n", "--ask", "what?")
    assert proc.returncode == 2 and "either a QUERY or --ask" in proc.stderr


@pytest.mark.llm
@pytest.mark.skipif(not LOCAL_MODEL.exists(), reason="the local GGUF is not assembled")
def test_the_local_model_counts_the_documents(corpus_graph: Path) -> None:
    code, out, _ = kgrag("cypher", "--ask", "How many documents are there?", "--yes",
                         "--json")
    assert code == 0
    result = json.loads(out)
    assert "Document" in result["query"]
    assert [list(r.values()) for r in result["rows"]] == [[3]]
