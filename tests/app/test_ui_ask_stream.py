"""The Ask page's streamed draft (streamlit AppTest, in-process): the model's raw text
shows while it is written, and the verified answer takes its place. The question is
answered by a stand-in for `app.ui_ask.ask` that streams through a scripted model."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app.ui_ask import DRAFT_NOTE, RETRY_NOTE
from core.answer import Answer, Evidence, Sentence, Verdict
from core.llm.base import CompletionRequest, TextSink, complete
from core.llm.testing import ScriptedStreamingChatModel

RAW = "Answer: Warsaw\nMarie Curie was born in Warsaw [1]."


def draft_page() -> None:
    import streamlit as st

    from app.ui_ask import AnswerDraft

    draft = AnswerDraft(st.empty())
    for piece in ["Answer: Paris\n", "Marie Curie was born in Paris [1]."]:
        draft.write(piece)
    if st.session_state.get("retry"):
        draft.restart()
        draft.write("Answer: Warsaw\n")


def test_the_draft_shows_the_raw_text_as_written_and_starts_over_on_restart() -> None:
    at = AppTest.from_function(draft_page).run()
    assert [c.value for c in at.caption] == [DRAFT_NOTE]
    assert [m.value for m in at.markdown] == [
        "Answer: Paris  \nMarie Curie was born in Paris [1]. ▌"]  # markers raw, lines kept

    at.session_state["retry"] = True
    at.run()
    assert [m.value for m in at.markdown] == ["Answer: Warsaw ▌"]  # Paris is gone
    assert RETRY_NOTE not in [c.value for c in at.caption]  # replaced by the new draft


streamed: list[str] = []


def stand_in_ask(question: str, mode: str, stream: TextSink | None = None) -> Answer:
    """Streams RAW through the sync LLM call the generator uses, then answers verified."""
    assert stream is not None
    model = ScriptedStreamingChatModel([RAW])
    complete(model, CompletionRequest.of([{"role": "user", "content": question}]), stream)
    streamed.append(getattr(stream, "text", ""))
    ev = Evidence(id="chk_0123456789abcdef", doc_id="curie", text="Marie Curie was born "
                  "in Warsaw.", score=0.9, marker="1")
    return Answer(question=question, mode="rag", answer="Marie Curie was born in Warsaw.",
                  short_answer="Warsaw", evidence=[ev],
                  sentences=[Sentence(text="Marie Curie was born in Warsaw.",
                                      citations=[ev.id],
                                      verification=Verdict(label="supported", score=0.93))])


def ask_page() -> None:
    from app.ui_ask import render

    render()


def test_the_verified_answer_replaces_the_streamed_draft(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.ui_ask.ask", stand_in_ask)
    streamed.clear()
    at = AppTest.from_function(ask_page).run()
    at.text_input[0].set_value("Where was Marie Curie born?")
    at.selectbox[0].set_value("rag")
    at.button[0].click().run()

    assert not at.exception
    assert streamed == [RAW]  # the page's draft got every piece
    text = [m.value for m in at.markdown]
    assert "### Warsaw" in text
    assert "Marie Curie was born in Warsaw. **[1]** :green-badge[supported] 0.93" in text
    assert not [t for t in text if "▌" in t or t.startswith("Answer:")]  # no draft left
    assert DRAFT_NOTE not in [c.value for c in at.caption]
