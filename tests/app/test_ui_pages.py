"""Page logic of the Streamlit app with streamlit's AppTest (in-process, real graph)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from flows.ingest import ingest_corpus
from tests.corpus import write_corpus

pytestmark = pytest.mark.services


def cypher_page() -> None:
    from app.ui_cypher import render

    render()


def explore_page() -> None:
    from app.ui_explore import render

    render()


def ingest_page() -> None:
    from app.ui_ingest import render

    render()


def eval_page() -> None:
    from app.ui_eval import render

    render()


@pytest.fixture
def ingested(kgrag_env: Path, tmp_path: Path, scripted_llm: object) -> Path:
    ingest_corpus([str(write_corpus(tmp_path / "corpus"))], extract=True)
    from app.ui_common import shared_components

    shared_components.clear()  # type: ignore[attr-defined]
    return kgrag_env


def test_cypher_console_runs_a_query_and_refuses_a_write(ingested: Path) -> None:
    at = AppTest.from_function(cypher_page, default_timeout=60).run()
    at.text_area[0].set_value("MATCH (d:Document) RETURN d.title AS title ORDER BY title")
    at.button[0].click().run()
    assert not at.exception
    rows = at.dataframe[0].value
    assert list(rows["title"]) == ["Albert Einstein", "curie", "danube"]
    at.text_area[0].set_value("MATCH (d:Document) DETACH DELETE d")
    at.button[0].click().run()
    assert "read-only" in at.error[0].value


def test_explorer_finds_an_entity_and_walks_an_edge(ingested: Path) -> None:
    at = AppTest.from_function(explore_page, default_timeout=60).run()
    at.text_input[0].set_value("marie curie").run()
    assert not at.exception
    assert any("Marie Curie" in m.value for m in at.markdown) or \
        any("Marie Curie" in h.value for h in at.subheader)
    moves = [b for b in at.button if "Warsaw" in b.label]
    assert moves, [b.label for b in at.button]
    moves[0].click().run()
    assert [h.value for h in at.subheader] == ["Warsaw"]


def test_ingest_page_lists_recent_runs_with_their_problems(ingested: Path,
                                                          tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "empty.txt").write_text("")
    ingest_corpus([str(tmp_path / "bad")], extract=False)
    at = AppTest.from_function(ingest_page, default_timeout=60).run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert len(labels) == 2 and "1 failed" in labels[0]
    # no Prefect server in this test: the schedules section says how to get one
    assert any("kgrag server start" in i.value for i in at.info), [i.value for i in at.info]


def test_evaluation_page_shows_results_or_says_how_to_get_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    import app.ui_eval

    monkeypatch.setattr(app.ui_eval, "BENCH_DIRS", [tmp_path / "bench" / "out"])
    at = AppTest.from_function(eval_page).run()
    assert "No benchmark results yet" in at.info[0].value
    out = tmp_path / "bench" / "out"
    out.mkdir(parents=True)
    (out / "faiss.json").write_text(json.dumps({"rows": [{"n": 10000, "recall": 0.98}]}))
    at = AppTest.from_function(eval_page).run()
    assert at.expander[0].label == "faiss"
    assert list(at.dataframe[0].value["recall"]) == [0.98]


def sure_answer_page() -> None:
    from app.ui_ask import show_answer
    from core.answer import Answer, CandidateRecord, Sentence

    show_answer(Answer(
        question="Where was Marie Curie born?", mode="rag", answer="Warsaw.",
        short_answer="Warsaw", sentences=[Sentence(text="Warsaw."),
                                          Sentence(text="Source 1 says she was born there.")],
        candidates=[CandidateRecord(answer="Warsaw", summary="Source 1 says so.", valid=True,
                                    wins=1),
                    CandidateRecord(answer="Paris", summary="Nothing says so.")]))


def test_ask_page_shows_the_sure_short_answer_and_its_candidates() -> None:
    at = AppTest.from_function(sure_answer_page).run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "### Warsaw" in text
    assert "**Warsaw** :green-badge[valid] 1 pairwise wins" in text
    assert "**Paris** :red-badge[rejected] 0 pairwise wins" in text
    assert at.expander[0].label == "SuRe candidates (2)"


def ask_page() -> None:
    from app.ui_ask import render

    render()


def test_ask_page_searches_passages_without_the_llm(ingested: Path) -> None:
    at = AppTest.from_function(ask_page, default_timeout=120).run()
    at.text_input[0].set_value("Where was Marie Curie born?")
    at.selectbox[0].set_value("search")
    at.selectbox[1].set_value("ppr")
    at.button[0].click().run()
    assert not at.exception
    assert "no LLM call" in at.caption[0].value
    assert "Marie Curie" in "\n".join(m.value for m in at.markdown)  # a linked entity
    assert at.expander and "score" in at.expander[0].label
