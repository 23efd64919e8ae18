"""kgrag on a real Neo4j 5, as a user runs it: ingest a corpus (Prefect flow, real embedder
and FAISS, the scripted extractor), delete a document, ask a two-hop question through
Think-on-Graph, and use the read-only Cypher console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings
from typer.testing import CliRunner

from app.cli import app
from core.errors import ReadOnlyViolation
from core.llm.base import CompletionRequest
from core.llm.testing import ScriptedChatModel
from core.settings import get_settings
from flows.components import Components
from flows.ingest import ingest_corpus
from kg.store import Neo4jGraphStore, make_graph_store
from tests.corpus import CORPUS, scripted_extraction, write_corpus
from tests.retrieval.conftest import kind_of, qa_responder

pytestmark = [pytest.mark.services, pytest.mark.neo4j]

# Marie Curie -> Warsaw comes from curie.txt, Warsaw -> Poland only from warsaw.txt.
FILES = {**CORPUS, "warsaw.txt": "Warsaw is the capital of Poland and its largest city, on "
                              "the Vistula river."}
QUESTION = "Which country has as its capital the city where Marie Curie was born?"

runner = CliRunner()


def kgrag(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def walk(start: str, triples: list[dict[str, Any]]) -> list[str]:
    """The entities a reasoning path visits, whichever way each edge points."""
    names = [start]
    for t in triples:
        names.append(t["object"] if t["subject"] == names[-1] else t["subject"])
    return names


def prefer_the_way_to_poland(request: CompletionRequest) -> dict[str, list[int]]:
    """The pruning model's scores: options on the way Marie Curie -> Warsaw -> Poland win
    (a scripted stand-in; the scripted extractor's predicates say nothing to embeddings)."""
    listing = request.messages[-1]["content"]
    options = [ln.split(". ", 1)[1] for ln in listing.splitlines() if ln[:1].isdigit()]
    return {"scores": [9 if ("Warsaw" in o or "Poland" in o) else 1 for o in options]}


def answer_from_the_poland_source(request: CompletionRequest) -> str:
    sources = request.messages[-1]["content"].split("\n\nQuestion:")[0]
    for line in sources.splitlines():
        if line.startswith("[") and "capital of Poland" in line:
            sentence = {"text": "Poland: Marie Curie was born in Warsaw, its capital.",
                        "citations": [line[1:line.index("]")]]}
            return json.dumps({"cannot_answer": False, "short_answer": "Poland",
                               "sentences": [sentence]})
    return json.dumps({"cannot_answer": True, "short_answer": "", "sentences": []})


@pytest.fixture
def qa_llm(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    """Components.llm: the scripted extractor for ingest, scripted QA replies otherwise."""
    qa = qa_responder(answer=answer_from_the_poland_source, grounding={"supported": True},
                      prune=prefer_the_way_to_poland,
                      sufficiency={"sufficient": False})  # search to depth D

    def reply(request: CompletionRequest) -> str:
        return qa(request) if kind_of(request) != "other" else scripted_extraction(request)

    fake = ScriptedChatModel(default=reply)

    def llm(self: Components) -> Any:
        if "_scripted" not in self.__dict__:
            from core.llm.factory import make_chat_model

            self.__dict__["_scripted"] = make_chat_model(self.settings, backend=fake)
        return self.__dict__["_scripted"]

    monkeypatch.setattr(Components, "llm", property(llm))
    return fake


def test_ingest_delete_and_ask_two_hops_on_neo4j(neo4j_env: Path, tmp_path: Path,
                                                qa_llm: ScriptedChatModel,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 180}):
        ingest_corpus([str(write_corpus(tmp_path / "corpus", FILES))])
    store = make_graph_store(get_settings())
    assert isinstance(store, Neo4jGraphStore) and not store.over_falkordb
    try:
        stats = store.stats()
        assert stats.nodes["Document"] == 4 and stats.relationships["RELATES"] > 0
        assert [e.name for e in store.find_entities("vienna")] == ["Vienna"]

        # delete: the Danube document and what only it supported go; the rest stays
        code, out, _ = kgrag("cypher", "MATCH (d:Document {title: $t}) RETURN d.id AS id",
                             "-p", 't="danube"', "--json")
        assert code == 0
        danube = json.loads(out)["rows"][0]["id"]
        code, out, _ = kgrag("delete", danube, "--json")
        assert code == 0 and json.loads(out)["documents"] == 1
        assert store.find_entities("vienna") == [] and store.find_entities("danube") == []
        assert [e.name for e in store.find_entities("warsaw")] == ["Warsaw"]
        assert store.stats().nodes["Document"] == 3
        assert danube not in store.document_hashes()
    finally:
        store.close()

    # a two-hop question: Marie Curie -> Warsaw -> Poland, through ToG on Neo4j
    monkeypatch.setenv("KGRAG_TOG_PRUNING", "llm")
    monkeypatch.setenv("KGRAG_TOG_SUFFICIENCY", "llm")  # the scripted "not yet": to depth D
    get_settings.cache_clear()
    code, out, _ = kgrag("ask", QUESTION, "--mode", "tog", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["answer"].startswith("Poland")
    walks = [walk("Marie Curie", p["triples"]) for p in answer["paths"]]
    assert any(w[:3] == ["Marie Curie", "Warsaw", "Poland"] for w in walks), walks
    assert len(answer["steps"]) == get_settings().tog_depth
    evidence = {e["id"]: e["text"] for e in answer["evidence"]}
    assert any("capital of Poland" in text for text in evidence.values())
    assert not any("Danube" in text for text in evidence.values())  # deleted
    assert answer["sentences"][0]["citations"][0] in evidence

    # the console on Neo4j: reads answer as JSON, a write is refused by kgrag and Neo4j
    code, out, _ = kgrag("cypher", "MATCH (d:Document) RETURN d.title AS title ORDER BY title",
                         "--json")
    assert code == 0
    assert [r["title"] for r in json.loads(out)["rows"]] == ["Albert Einstein", "curie",
                                                             "warsaw"]
    refused = runner.invoke(app, ["cypher", "MATCH (d:Document) DETACH DELETE d"])
    assert isinstance(refused.exception, ReadOnlyViolation)  # the CLI's main prints it, exit 2
    store = make_graph_store(get_settings())
    try:
        assert store.stats().nodes["Document"] == 3
    finally:
        store.close()


def test_mention_layer_pagerank_search_and_ask_on_neo4j(
        neo4j_env: Path, tmp_path: Path, qa_llm: ScriptedChatModel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The mention layer (spaCy, no LLM call), `kgrag search --json` by PageRank and
    `kgrag ask --json` on Neo4j carry what they do on FalkorDB (tests/retrieval/test_ppr)."""
    from tests.retrieval.test_ppr import GRAPH_FIRST, PASSAGES

    for key, value in GRAPH_FIRST.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    folder = tmp_path / "passages"
    folder.mkdir()
    for key, text in PASSAGES.items():
        (folder / f"{key}.txt").write_text(text + "\n", encoding="utf-8")
    calls = qa_llm.calls
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 180}):
        summary = ingest_corpus([str(folder)], extract=False)
    assert summary["chunks"] == len(PASSAGES) and summary["mention_entities"] > 0
    assert qa_llm.calls == calls  # no LLM call to build the graph
    code, out, _ = kgrag("search", "Which river flows through the town where Anna Kowalska "
                         "was born?", "--k", "2", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["retriever"] == "ppr" and data["seeds"][0]["name"] == "Anna Kowalska"
    texts = " ".join(h["text"] for h in data["hits"])
    assert "Anna Kowalska was born in Oakridge" in texts and "Tamsin" in texts
    code, out, _ = kgrag("ask", "Where was Anna Kowalska born?", "--mode", "tog", "--json")
    assert code == 0
    answer = json.loads(out)
    assert {"answer", "short_answer", "sentences", "paths", "evidence", "cost"} <= set(answer)
    assert answer["topic_entities"][0]["name"] == "Anna Kowalska"
    assert any("Oakridge" in e["text"] for e in answer["evidence"])
