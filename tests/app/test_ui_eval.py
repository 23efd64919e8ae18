"""The Evaluation page with streamlit's AppTest: the latest reports side by side, and a run
started from its form (real graph and Prefect, the scripted stand-in model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.llm.testing import ScriptedChatModel
from flows.evaluation_report import EvaluationReport, Row, new_report_path
from tests.flows.test_evaluate import ingested, stand_in_model


def eval_page() -> None:
    from app.ui_eval import render

    render()


def saved_report(data_dir: Path, name: str, started_at: float, em: float) -> Path:
    report = EvaluationReport(name=name, questions_file=f"{name}.jsonl", modes=["rag", "tog"],
                              started_at=started_at, finished_at=started_at + 60,
                              running=False, questions=1)
    report.rows = [Row(line=1, question="Where?", mode=m, short_answer="Here", em=em, f1=em,
                       llm_calls=2, prompt_tokens=300, completion_tokens=20, seconds=4.0)
                   for m in report.modes]
    report.summarise()
    report.path = str(new_report_path(data_dir / "evaluations", name, started_at))
    return report.save()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "data"))
    from core.settings import get_settings

    get_settings.cache_clear()
    return tmp_path / "data"


def test_the_latest_reports_show_side_by_side(data_dir: Path) -> None:
    at = AppTest.from_function(eval_page, default_timeout=30).run()
    assert not at.exception
    assert any("No evaluation yet" in c.value for c in at.caption)
    for name, started, em in (("old", 1.0e9, 0.0), ("samples", 1.7e9, 0.5),
                              ("newer", 1.8e9, 1.0)):
        saved_report(data_dir, name, started, em)
    at = AppTest.from_function(eval_page, default_timeout=30).run()
    assert not at.exception
    chosen = at.multiselect[-1]  # the form's modes come first
    assert [v.split(",")[0] for v in chosen.value] == ["newer", "samples"]  # the latest two
    tables = [t.value for t in at.dataframe if "support recall" in t.value.columns
              and "question" not in t.value.columns]  # a table of the modes per report
    assert [list(t["EM"]) for t in tables] == [[1.0, 1.0], [0.5, 0.5]]
    assert list(tables[0]["tokens"]) == [320, 320] and list(tables[0]["s"]) == [4.0, 4.0]


@pytest.mark.services
def test_a_run_started_from_the_page_shows_with_the_others(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in: ScriptedChatModel = stand_in_model(monkeypatch)
    questions = ingested(tmp_path)
    at = AppTest.from_function(eval_page, default_timeout=300).run()
    at.text_input[0].set_value(str(questions))
    at.multiselect[0].set_value(["rag:dense"])
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [saved] = list((kgrag_env / "evaluations").glob("*.json"))
    assert json.loads(saved.read_text())["summary"]["rag:dense"]["em"] == 0.6667
    assert stand_in.calls > 0
    tables = [t.value for t in at.dataframe if "support recall" in t.value.columns
              and "mode" in t.value.columns and "question" not in t.value.columns]
    assert [list(t["mode"]) for t in tables] == [["rag:dense"]]
    assert list(tables[0]["EM"]) == [0.6667]
