"""Answer generation: numbered sources, citation markers mapped back to ids, refusals."""

from __future__ import annotations

import json

from core.answer import Triple
from core.llm.testing import ScriptedChatModel
from core.models import Chunk
from retrieval.chunk_rag import ScoredChunk
from retrieval.generate import AnswerGenerator, Sources
from tests.retrieval.conftest import answer_json, qa_responder


def chunk(key: str, text: str) -> ScoredChunk:
    return ScoredChunk(Chunk(id=Chunk.make_id(f"doc_{key}", 0, text), doc_id=f"doc_{key}",
                             text=text, start=0, end=len(text), position=0), 0.9, "vector")


BORN = chunk("born", "Marie Curie was born in Warsaw in 1867.")
MARRIED = chunk("married", "Marie Curie married Pierre Curie in 1895.")
TRIPLE = Triple(subject="Marie Curie", predicate="born in", object="Warsaw",
                subject_id="ent_a", object_id="ent_b", chunk_id=BORN.chunk.id)


def sources() -> Sources:
    return Sources.number([BORN, MARRIED], [TRIPLE, TRIPLE])


def test_sources_are_numbered_chunks_then_facts() -> None:
    s = sources()
    assert [e.marker for e in s.evidence] == ["1", "2"]
    assert [f.marker for f in s.facts] == ["T1"]  # the repeated triple is listed once
    text = s.render()
    assert "[1] Marie Curie was born in Warsaw in 1867." in text
    assert "[T1] Marie Curie born in Warsaw" in text


def test_citation_markers_map_to_chunk_and_triple_ids() -> None:
    llm = ScriptedChatModel(default=qa_responder(answer=answer_json(
        ("Marie Curie was born in Warsaw.", ["1", "T1"]),
        ("She married Pierre Curie.", ["[2]", "7", "T9", "x"]),
    )))
    out = AnswerGenerator(llm, output="json").generate("Where was Marie Curie born?", sources())
    assert not out.cannot_answer
    assert [s.citations for s in out.sentences] == [
        [BORN.chunk.id, TRIPLE.id],
        [MARRIED.chunk.id],  # unknown markers 7, T9 and x are dropped
    ]
    prompt = llm.requests[0].messages[-1]["content"]
    assert "[2] Marie Curie married Pierre Curie in 1895." in prompt


def test_inline_markers_move_into_citations_and_multi_sentence_items_split() -> None:
    llm = ScriptedChatModel(default=qa_responder(answer=answer_json(
        ("Marie Curie was born in Warsaw [1]. She married Pierre Curie [2][T1].", []),
    )))
    out = AnswerGenerator(llm, output="json").generate("Tell me about Marie Curie.", sources())
    assert [s.text for s in out.sentences] == ["Marie Curie was born in Warsaw.",
                                               "She married Pierre Curie."]
    assert out.sentences[0].citations == [BORN.chunk.id]
    assert out.sentences[1].citations == [MARRIED.chunk.id, TRIPLE.id]


def test_cannot_answer_says_so_instead_of_guessing() -> None:
    llm = ScriptedChatModel(default=qa_responder(answer=answer_json(
        ("Marie Curie was born on the Moon.", ["1"]), cannot_answer=True)))
    out = AnswerGenerator(llm, output="json").generate("Who was Marie Curie's grandfather?",
                                                       sources())
    assert out.cannot_answer
    assert [s.text for s in out.sentences] == [
        "The sources do not say who was Marie Curie's grandfather."]
    assert out.sentences[0].citations == []


def test_no_evidence_refuses_without_a_call() -> None:
    llm = ScriptedChatModel()
    out = AnswerGenerator(llm, output="json").generate("Who won?", Sources())
    assert out.cannot_answer and out.text.startswith("The sources do not say")
    assert llm.calls == 0


def test_schema_asks_for_the_refusal_flag_short_answer_and_cited_sentences() -> None:
    llm = ScriptedChatModel(default=qa_responder(answer=answer_json(("Warsaw.", ["1"]))))
    AnswerGenerator(llm, output="json").generate("Where?", sources())
    schema = llm.requests[0].json_schema
    assert schema is not None
    assert schema["required"] == ["cannot_answer", "short_answer", "sentences"]
    example = json.loads(llm.requests[0].messages[2]["content"])
    assert example["sentences"] and example["short_answer"] == "Charles Babbage"


def test_short_answer_comes_from_the_same_call() -> None:
    reply = json.dumps({"cannot_answer": False, "short_answer": "Answer: Warsaw.",
                        "sentences": [{"text": "Marie Curie was born in Warsaw [1].",
                                       "citations": []}]})
    llm = ScriptedChatModel(default=qa_responder(answer=reply))
    out = AnswerGenerator(llm, output="json").generate("Where was Marie Curie born?", sources())
    assert out.short_answer == "Warsaw" and llm.calls == 1
    assert out.sentences[0].text == "Marie Curie was born in Warsaw."


def test_a_missing_short_answer_falls_back_to_a_short_first_sentence() -> None:
    llm = ScriptedChatModel(default=qa_responder(answer=answer_json(("Warsaw.", ["1"]))))
    out = AnswerGenerator(llm, output="json").generate("Where?", sources())
    assert out.short_answer == "Warsaw"


# --- the lines format (one call) --------------------------------------------------------


def lines(reply: str) -> ScriptedChatModel:
    return ScriptedChatModel([reply])


def test_lines_answer_is_unconstrained_short_and_cites_inline() -> None:
    llm = lines("Answer: Warsaw\nMarie Curie was born in Warsaw [1][T1]. She married "
                "Pierre Curie [2].")
    out = AnswerGenerator(llm, output="lines").generate("Where was Marie Curie born?", sources())
    request = llm.requests[0]
    assert request.json_schema is None and request.max_tokens is not None
    assert request.max_tokens <= 160
    assert out.short_answer == "Warsaw" and not out.cannot_answer
    assert [s.citations for s in out.sentences] == [[BORN.chunk.id, TRIPLE.id],
                                                    [MARRIED.chunk.id]]


def test_lines_answer_unknown_is_a_refusal() -> None:
    llm = lines("Answer: unknown\nThe sources do not say who her grandfather was.")
    out = AnswerGenerator(llm, output="lines").generate("Who was Marie Curie's grandfather?",
                                                         sources())
    assert out.cannot_answer
    assert out.sentences[0].text.startswith("The sources do not say")


def test_lines_answer_without_answer_line_keeps_its_sentences() -> None:
    out = AnswerGenerator(lines("Warsaw [1]."), output="lines").generate("Where?", sources())
    assert out.short_answer == "Warsaw" and out.sentences[0].citations == [BORN.chunk.id]


# --- the short-first format (the default) ----------------------------------------------


def test_short_first_asks_the_short_answer_alone_then_its_support_on_the_same_prompt(
        ) -> None:
    from core.llm.base import TextBuffer

    llm = ScriptedChatModel(["Warsaw.", "Marie Curie was born in Warsaw [1][T1]."])
    shown = TextBuffer()
    out = AnswerGenerator(llm).generate("Where was Marie Curie born?", sources(), stream=shown)
    first, second = llm.requests
    assert first.max_tokens is not None and first.max_tokens <= 32
    assert first.json_schema is None and second.json_schema is None
    assert "Answer with a short phrase only." in first.messages[-1]["content"]
    # The second call repeats the first's messages (the model's KV cache is reused) and
    # adds the short answer and the request for support.
    assert second.messages[:2] == first.messages
    assert second.messages[2] == {"role": "assistant", "content": "Warsaw."}
    assert out.short_answer == "Warsaw" and not out.cannot_answer
    assert out.sentences[0].citations == [BORN.chunk.id, TRIPLE.id]
    assert shown.text == "Answer: Warsaw\nMarie Curie was born in Warsaw [1][T1]."


def test_short_first_refusal_is_one_call_and_no_support_keeps_the_answer() -> None:
    llm = ScriptedChatModel(["The sources do not mention her grandfather."])
    out = AnswerGenerator(llm).generate("Who was Marie Curie's grandfather?", sources())
    assert out.cannot_answer and len(llm.requests) == 1
    assert out.sentences[0].text.startswith("The sources do not say who")
    llm = ScriptedChatModel(["Answer: Warsaw", ""])
    out = AnswerGenerator(llm).generate("Where was Marie Curie born?", sources())
    assert out.short_answer == "Warsaw" and out.sentences[0].text == "The answer is Warsaw."
    assert out.sentences[0].citations == []  # the verifier checks it against everything
