"""`kgrag evaluate` as a user runs it: a questions file with a malformed line, the tables,
--json; real graph and Prefect, the scripted stand-in model of tests/flows/test_evaluate.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.llm.testing import ScriptedChatModel
from tests.app.test_cli import kgrag
from tests.flows.test_evaluate import ingested, stand_in_model, write_questions


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    return stand_in_model(monkeypatch)


@pytest.mark.services
def test_a_malformed_line_is_named_and_the_rest_is_scored_per_mode(
        kgrag_env: Path, tmp_path: Path, stand_in: ScriptedChatModel) -> None:
    questions = ingested(tmp_path)
    lines = questions.read_text().splitlines()
    write_questions(questions, [*lines[:2], '{"question": "Who?", "gold": "Ada"}', lines[2]])
    code, out, err = kgrag("evaluate", str(questions), "--mode", "rag", "--mode", "rag:dense")
    assert code == 0, err
    assert "line 3:" in err and "unknown field 'gold'" in err and "not scored" in err
    assert "mode rag\n" in out and "mode rag:dense\n" in out  # a table of answers each
    assert "questions: 3 questions" in out  # the modes side by side
    [report] = list((kgrag_env / "evaluations").glob("*.json"))
    assert f"report: {report}" in out.replace("\n", "")
    data = json.loads(report.read_text())
    assert [b["line"] for b in data["bad_lines"]] == [3]
    assert {m: s["em"] for m, s in data["summary"].items()} == {"rag": 0.6667,
                                                                "rag:dense": 0.6667}
    assert {(r["line"], r["mode"]) for r in data["rows"]} == {
        (line, mode) for line in (1, 2, 4) for mode in ("rag", "rag:dense")}


@pytest.mark.services
def test_json_is_the_report_and_limit_takes_the_first_questions(
        kgrag_env: Path, tmp_path: Path, stand_in: ScriptedChatModel) -> None:
    questions = ingested(tmp_path)
    code, out, _ = kgrag("evaluate", str(questions), "--mode", "rag", "--limit", "2",
                         "--json")
    assert code == 0
    data = json.loads(out)
    assert data["questions"] == 2 and data["modes"] == ["rag"]
    assert [r["em"] for r in data["rows"]] == [1.0, 0.0]  # Warsaw right, the Danube wrong
    assert data["summary"]["rag"]["em"] == 0.5
    assert Path(data["path"]).is_file()


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "q.jsonl", ['{"question": "Where?"}'])
    code, _, err = kgrag("evaluate", str(questions), "--mode", "psychic")
    assert code == 2 and "unknown mode 'psychic'" in err and "rag:dense" in err
    code, _, err = kgrag("evaluate", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "does not exist" in err
    write_questions(questions, ["not json", '{"answer": "Ada"}'])
    code, out, err = kgrag("evaluate", str(questions), "--json")
    assert code == 2 and out == ""
    assert "line 1: not JSON" in err and 'line 2: no "question"' in err
    assert "no questions in" in err
