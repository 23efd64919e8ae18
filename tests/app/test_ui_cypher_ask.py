"""The Cypher console's "Ask in words" box (streamlit AppTest, real graph, fake model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.test_cli_cypher_ask import fake_model_writes
from tests.corpus import write_corpus

pytestmark = pytest.mark.services


def cypher_page() -> None:
    from app.ui_cypher import render

    render()


def test_a_question_fills_the_query_box_and_run_uses_it(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui_common import shared_components
    from flows.ingest import ingest_corpus

    ingest_corpus([str(write_corpus(tmp_path / "corpus"))], extract=False)
    shared_components.clear()
    query = "MATCH (d:Document) RETURN d.title AS title ORDER BY title"
    fake = fake_model_writes(monkeypatch, query)
    at = AppTest.from_function(cypher_page, default_timeout=60).run()
    at.text_input[0].set_value("Which documents are there?").run()
    assert not at.exception
    assert at.text_area[0].value == query  # shown, editable, not yet run
    assert not at.dataframe and fake.calls == 1
    at.button[0].click().run()
    assert list(at.dataframe[0].value["title"]) == ["Albert Einstein", "curie", "danube"]
    assert fake.calls == 1  # running does not ask the model again
