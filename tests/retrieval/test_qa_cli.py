"""`kgrag ask` end to end on a small ingested corpus: real FalkorDB, FAISS, embedder and
Prefect ingest; the scripted extractor for ingest and a scripted model for the QA calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings
from typer.testing import CliRunner

from app.cli import app
from core.llm.base import CompletionRequest
from core.llm.testing import ScriptedChatModel
from flows.components import Components
from flows.ingest import ingest_corpus
from tests.corpus import scripted_extraction, write_corpus
from tests.retrieval.conftest import answer_json, kind_of, qa_responder

pytestmark = pytest.mark.services

runner = CliRunner()


def cited_answer(request: CompletionRequest) -> str:
    """Answers from whichever numbered source mentions Warsaw (as a model should)."""
    sources = request.messages[-1]["content"].split("\n\nQuestion:")[0]
    for line in sources.splitlines():
        if line.startswith("[") and "Warsaw" in line:
            marker = line[1:line.index("]")]
            return answer_json(("Marie Curie was born in Warsaw.", [marker, "99"]))
    return answer_json(("The sources do not say.", []), cannot_answer=True)


def cited_summary(request: CompletionRequest) -> str:
    """SuRe's summary for a candidate, citing the source that mentions Warsaw."""
    cited = json.loads(cited_answer(request))["sentences"][0]
    return json.dumps({"summary": cited["text"], "citations": cited["citations"]})


@pytest.fixture
def qa_llm(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    """Components.llm: the scripted extractor for ingest, scripted QA replies otherwise."""
    qa = qa_responder(answer=cited_answer, grounding={"supported": True},
                      sufficiency={"sufficient": True},
                      sure_candidates={"candidates": ["Warsaw", "Paris"]},
                      sure_summary=cited_summary,
                      sure_verify=lambda r: {"valid": "Answer: Warsaw" in
                                             r.messages[-1]["content"]})

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


def ingest(corpus: Path) -> None:
    # Prefect's ephemeral API starts within its default 20 s only on an idle machine.
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 180}):
        ingest_corpus([str(write_corpus(corpus))])


def kgrag(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_ask_json_end_to_end(kgrag_env: Path, tmp_path: Path, qa_llm: ScriptedChatModel
                             ) -> None:
    ingest(tmp_path / "corpus")
    calls_after_ingest = qa_llm.calls
    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "tog", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"answer", "sentences", "paths", "evidence", "cost"} <= set(data)
    assert data["answer"] == "Marie Curie was born in Warsaw."
    sentence = data["sentences"][0]
    assert sentence["verification"]["label"] == "supported"
    cited = sentence["citations"]
    assert len(cited) == 1  # the unknown marker [99] was dropped
    evidence = {e["id"]: e for e in data["evidence"]}
    assert "Warsaw" in evidence[cited[0]]["text"]
    assert data["topic_entities"][0]["name"] == "Marie Curie"
    assert data["paths"] and all(t["chunk_id"] for p in data["paths"] for t in p["triples"])
    assert data["steps"][0]["sufficient"] is True
    assert data["cost"]["llm_calls"] == qa_llm.calls - calls_after_ingest > 0


def test_ask_prints_citations_paths_verdicts_and_cost(kgrag_env: Path, tmp_path: Path,
                                                      qa_llm: ScriptedChatModel) -> None:
    ingest(tmp_path / "corpus")
    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "tog")
    assert code == 0
    assert "Marie Curie was born in Warsaw. [" in out and "supported" in out
    assert "Reasoning paths" in out and "Marie Curie -" in out
    assert "Cost" in out and "LLM calls" in out


def test_ask_sure_prints_the_short_answer_and_its_candidates(
        kgrag_env: Path, tmp_path: Path, qa_llm: ScriptedChatModel) -> None:
    ingest(tmp_path / "corpus")
    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "rag", "--sure")
    assert code == 0
    assert "Answer: Warsaw" in out and "Candidates" in out
    assert "Paris: rejected" in out and "Warsaw: valid" in out
    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "rag", "--sure",
                         "--json")
    data = json.loads(out)
    assert data["short_answer"] == "Warsaw"
    assert [c["answer"] for c in data["candidates"]] == ["Warsaw", "Paris"]
    assert data["sentences"][1]["citations"]  # the summary cites the Warsaw chunk


def test_ask_rejects_an_unknown_mode_and_an_empty_question(kgrag_env: Path) -> None:
    code, _, err = kgrag("ask", "Where?", "--mode", "psychic")
    assert code == 2 and "psychic" in err
    code, out, err = kgrag("ask", "  ", "--json")
    assert code == 2 and out == "" and "the question is empty" in err


def test_ask_timings_name_the_stages_and_sum_to_the_total(
        kgrag_env: Path, tmp_path: Path, qa_llm: ScriptedChatModel) -> None:
    ingest(tmp_path / "corpus")
    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "rag", "--json")
    assert code == 0
    data = json.loads(out)
    stages = data["cost"]["timings"]
    assert {"python start + CLI imports", "open stores", "plan", "retrieve", "generate",
            "verify", "other"} <= set(stages)
    assert all(v >= 0 for v in stages.values())
    assert abs(sum(stages.values()) - data["total_seconds"]) < 0.01
    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "rag", "--timings")
    assert code == 0 and "Timings (total" in out and "retrieve" in out
