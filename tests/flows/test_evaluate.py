"""The evaluate flow on a small ingested corpus: real FalkorDB, FAISS, embedder, spaCy and
Prefect; a scripted stand-in for the model (the extractor of tests/corpus.py, and answers
that cite the source naming the answer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flows.evaluate
from core.errors import KgragError
from core.llm.base import CompletionRequest
from core.llm.testing import ScriptedChatModel
from flows.components import Components
from flows.evaluate import EvalMode, evaluate
from flows.evaluation_report import (
    EvaluationReport,
    parse_questions,
    source_precision,
    source_recall,
)
from flows.ingest import ingest_corpus
from retrieval import prompts
from tests.corpus import scripted_extraction, write_corpus
from tests.retrieval.conftest import answer_json, kind_of, qa_responder

#: question -> (the word the cited source must contain, the stand-in's short answer)
ANSWERS = {
    "Where was Marie Curie born?": ("Warsaw", "Warsaw"),
    "Which river flows through Vienna?": ("Vienna", "the Danube"),
    "Where was Albert Einstein born?": ("Ulm", "Ulm"),
}
QUESTIONS = [
    {"question": "Where was Marie Curie born?", "answer": "Warsaw", "sources": ["curie.txt"]},
    {"question": "Which river flows through Vienna?", "answer": "Rhine",
     "sources": ["danube.txt"]},
    # Two gold sources, of which the answer cites one.
    {"question": "Where was Albert Einstein born?", "answer": ["Ulm", "Ulm, Germany"],
     "sources": ["einstein.md", "curie.txt"]},
]


def question_of(request: CompletionRequest) -> str:
    """The question of an answer call (the short-first prompt ends its question line with
    "Answer with a short phrase only.")."""
    asking = next(m["content"] for m in reversed(request.messages) if "Question: " in
                  m["content"])
    line = asking.split("Question: ", 1)[1].split("\n", 1)[0]
    return line.removesuffix(" Answer with a short phrase only.")


def stand_in_answer(request: CompletionRequest) -> str:
    """Cites the numbered source that contains the answer's word, as a model should."""
    word, short = ANSWERS[question_of(request)]
    sources = request.messages[-1]["content"].split("\n\nQuestion:")[0]
    for line in sources.splitlines():
        if line.startswith("[") and word in line:
            marker = line[1:line.index("]")]
            return answer_json((f"The answer is {short}.", [marker]), short_answer=short)
    return answer_json(("The sources do not say.", []), cannot_answer=True)


def stand_in_model(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    """Components.llm: the scripted extractor for ingest, `stand_in_answer` for answers, and
    'supported' for every grounding check."""
    qa = qa_responder(answer=stand_in_answer, grounding={"supported": True})

    def reply(request: CompletionRequest) -> str:
        return qa(request) if kind_of(request) != "other" else scripted_extraction(request)

    fake = ScriptedChatModel(default=reply, model_name="scripted-stand-in")

    def llm(self: Components) -> Any:
        if "_scripted" not in self.__dict__:
            from core.llm.factory import make_chat_model

            self.__dict__["_scripted"] = make_chat_model(self.settings, backend=fake)
        return self.__dict__["_scripted"]

    monkeypatch.setattr(Components, "llm", property(llm))
    monkeypatch.setenv("KGRAG_GROUNDING", "llm")  # the checker asks the stand-in
    return fake


def asked(fake: ScriptedChatModel, since: int = 0) -> list[str]:
    """The questions the answer calls since call `since` were about, in order."""
    return [question_of(r) for r in fake.requests[since:] if kind_of(r) == "answer"
            and r.messages[-1]["content"] != prompts.SUPPORT_USER]


def ingested(tmp_path: Path) -> Path:
    """The corpus of tests/corpus.py ingested; returns a questions file about it."""
    ingest_corpus([str(write_corpus(tmp_path / "corpus"))])
    return write_questions(tmp_path / "questions.jsonl", [json.dumps(q) for q in QUESTIONS])


def write_questions(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    return stand_in_model(monkeypatch)


# ------------------------------------------------------------------------ with services


@pytest.mark.services
def test_answers_are_scored_against_gold_answers_and_sources(
        kgrag_env: Path, tmp_path: Path, stand_in: ScriptedChatModel) -> None:
    questions = ingested(tmp_path)
    lines = questions.read_text().splitlines()
    write_questions(questions, [lines[0], '{"question": "Unclosed', *lines[1:]])
    report = evaluate(str(questions), ["rag", "rag:dense"])

    assert [(r["mode"], r["line"]) for r in report["rows"]] == \
        [("rag", 1), ("rag", 3), ("rag", 4), ("rag:dense", 1), ("rag:dense", 3),
         ("rag:dense", 4)]
    assert report["bad_lines"] == [{"line": 2, "error": report["bad_lines"][0]["error"]}]
    assert report["bad_lines"][0]["error"].startswith("not JSON")
    for mode in ("rag", "rag:dense"):
        rows = {r["question"]: r for r in report["rows"] if r["mode"] == mode}
        curie, river, einstein = (rows[q["question"]] for q in QUESTIONS)
        assert (curie["short_answer"], curie["em"], curie["f1"]) == ("Warsaw", 1.0, 1.0)
        assert [Path(s).name for s in curie["cited_sources"]] == ["curie.txt"]
        assert curie["support_recall"] == 1.0 and curie["citation_precision"] == 1.0
        assert curie["grounding"] == 1.0 and curie["supported"] == 1.0
        assert curie["llm_calls"] >= 2 and curie["prompt_tokens"] > 0
        assert curie["seconds"] > 0
        assert (river["em"], river["f1"], river["support_recall"]) == (0.0, 0.0, 1.0)
        assert (einstein["em"], einstein["support_recall"]) == (1.0, 0.5)
        summary = report["summary"][mode]
        assert (summary["questions"], summary["errors"]) == (3, 0)
        assert summary["em"] == round(2 / 3, 4)
        assert summary["support_recall"] == round(2.5 / 3, 4)
        assert summary["llm_calls"] == round(sum(r["llm_calls"] for r in rows.values()) / 3,
                                             4)

    path = Path(report["path"])
    assert path.parent == kgrag_env / "evaluations" and path.name.endswith("-questions.json")
    assert json.loads(path.read_text())["summary"] == report["summary"]
    assert path.with_suffix(".png").stat().st_size > 1000
    assert report["finished_at"] is not None and not report["running"]


@pytest.mark.services
def test_grounding_is_null_when_no_verifier_checked_the_answer(
        kgrag_env: Path, tmp_path: Path, stand_in: ScriptedChatModel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_GROUNDING", "off")
    report = evaluate(str(ingested(tmp_path)), ["rag"], limit=1)
    [row] = report["rows"]
    assert row["em"] == 1.0
    assert row["grounding"] is None and row["supported"] is None
    assert report["summary"]["rag"]["grounding"] is None
    assert report["settings"]["grounding"] == "off"


@pytest.mark.services
def test_a_cut_off_run_resumes_without_answering_again(
        kgrag_env: Path, tmp_path: Path, stand_in: ScriptedChatModel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    questions = ingested(tmp_path)
    scored = flows.evaluate.answer_row
    seen: list[str] = []

    def dies_at_the_third(answer: Any, *args: Any) -> Any:
        seen.append(answer.question)
        if len(seen) == 3:
            raise RuntimeError("power cut")
        return scored(answer, *args)

    monkeypatch.setattr(flows.evaluate, "answer_row", dies_at_the_third)
    with pytest.raises(RuntimeError, match="power cut"):
        evaluate(str(questions), ["rag"])
    [cut] = list((kgrag_env / "evaluations").glob("*.json"))
    partial = json.loads(cut.read_text())
    assert partial["finished_at"] is None and "power cut" in partial["error"]
    assert [r["line"] for r in partial["rows"]] == [1, 2]

    monkeypatch.setattr(flows.evaluate, "answer_row", scored)
    before = stand_in.calls
    report = evaluate(str(questions), ["rag"])
    # Only the missing one (a rectify round may ask it twice).
    assert set(asked(stand_in, before)) == {QUESTIONS[2]["question"]}
    assert report["path"] == str(cut) and report["resumed_answers"] == 2
    assert [r["line"] for r in report["rows"]] == [1, 2, 3] and report["finished_at"]
    assert report["rows"][0]["em"] == 1.0 and report["error"] == ""

    # A finished report is not resumed: the next run answers again, in a new report.
    before = stand_in.calls
    again = evaluate(str(questions), ["rag"], limit=1)
    assert set(asked(stand_in, before)) == {QUESTIONS[0]["question"]}
    assert again["path"] != str(cut) and again["resumed_answers"] == 0


# ------------------------------------------------------------------------ unit


def test_malformed_lines_are_reported_with_their_number_and_reason() -> None:
    questions, bad = parse_questions([
        '{"question": "Where?", "answer": "Here", "sources": "a.md"}',
        "",
        "[1, 2]",
        '{"question": "  "}',
        '{"question": "Who?", "gold": "Ada"}',
        '{"question": "Who?", "answer": 3}',
        '{"question": "Where?"}',
        '{"question": "When?", "id": "q7"}',
    ])
    assert [(q.line, q.question, q.answers, q.sources) for q in questions] == [
        (1, "Where?", ("Here",), ("a.md",)), (8, "When?", (), ())]
    assert [(b.line, b.error.split(":")[0]) for b in bad] == [
        (3, "not a JSON object"), (4, 'no "question" (a non-empty string)'),
        (5, "unknown field 'gold'"), (6, '"answer" must be a string or a list of strings'),
        (7, "the same question as line 1")]


def test_citation_precision_is_the_share_of_cited_files_that_are_gold() -> None:
    gold = ["warsaw.md", "samples/marie-curie.md"]
    cited = ["/data/samples/warsaw.md", "/data/samples/marie-curie.md", "/data/pierre-curie.md"]
    assert source_precision(gold, cited) == round(2 / 3, 4)
    assert source_recall(gold, cited) == 1.0
    assert source_precision(gold, []) is None and source_precision([], cited) is None
    assert source_precision(gold, ["/elsewhere/warsaw.md.bak"]) == 0.0


def test_modes_name_an_ask_mode_and_optionally_a_retriever() -> None:
    assert EvalMode.parse("rag:dense") == EvalMode("rag", "dense")
    assert EvalMode.parse("tog").name == "tog"
    for wrong in ("psychic", "rag:magic", "ppr"):
        with pytest.raises(KgragError, match="unknown mode"):
            EvalMode.parse(wrong)


def test_a_report_left_running_by_a_dead_process_can_be_resumed() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    report = EvaluationReport(name="q", questions_file="q.jsonl", modes=["rag"],
                              pid=int(dead.stdout))
    assert report.resumable()  # killed: still marked running, but its process is gone
    assert not EvaluationReport(name="q", questions_file="q.jsonl", modes=["rag"]).resumable()
    report.finished_at = 1.0
    assert not report.resumable()
