"""The answer streams out of the pipeline while the model writes it: before verification,
piece by piece through the real LLM layers, started over for each rectify round. The
model is a scripted streaming fake, retrieval and verification are stand-ins (named as
such), generation and diagnosis are real."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from core.answer import Sentence, Verdict
from core.llm.base import TextBuffer
from core.llm.factory import make_chat_model
from core.llm.testing import ScriptedChatModel, ScriptedStreamingChatModel
from core.settings import load_settings
from retrieval.generate import AnswerGenerator, Sources
from retrieval.pipeline import QuestionAnsweringPipeline
from retrieval.verify import Diagnoser
from tests.retrieval.conftest import answer_json
from tests.retrieval.test_qa_generate import BORN, MARRIED

QUESTION = "Where was Marie Curie born?"
FIRST = "Answer: Paris\nMarie Curie was born in Paris [1]."
SECOND = "Answer: Warsaw\nMarie Curie was born in Warsaw [1]."


class StandInChunks:
    """Chunk retrieval that always finds the same two chunks."""

    retriever = None

    def retrieve(self, question: str, k: int | None = None) -> list[Any]:
        return [BORN, MARRIED]


class StandInVerifier:
    """Marks a sentence supported when its text is in the first chunk; records what the
    stream had shown by the time each verification began."""

    def __init__(self, shown: TextBuffer) -> None:
        self.shown = shown
        self.draft_at_verify: list[str] = []

    def verify(self, sentences: Sequence[Sentence], sources: Sources, *,
               cannot_answer: bool = False, question: str = "") -> list[Sentence]:
        self.draft_at_verify.append(self.shown.text)
        label = "supported" if all(s.text.rstrip(".").split()[-1] in BORN.chunk.text
                                   for s in sentences) else "unsupported"
        return [s.model_copy(update={"verification": Verdict(label=label, score=1.0)})
                for s in sentences]


def pipeline(fake: ScriptedChatModel, verifier: StandInVerifier, tmp_path: Path,
             output: str = "lines") -> QuestionAnsweringPipeline:
    settings = load_settings(data_dir=tmp_path, llm_cache=False)
    llm = make_chat_model(settings, backend=fake)
    return QuestionAnsweringPipeline(
        linker=cast(Any, None), router=cast(Any, None), reasoner=cast(Any, None),
        chunk_retriever=cast(Any, StandInChunks()),
        generator=AnswerGenerator(llm, output=output), verifier=cast(Any, verifier),
        diagnoser=Diagnoser(), usage_sources=[llm], max_rounds=1)


def test_the_answer_streams_before_verification_and_each_round_starts_over(
        tmp_path: Path) -> None:
    fake = ScriptedStreamingChatModel([FIRST, SECOND])
    shown = TextBuffer()
    verifier = StandInVerifier(shown)

    answer = pipeline(fake, verifier, tmp_path).ask(QUESTION, mode="rag", stream=shown)

    # Round 0 (Paris: unsupported) streamed whole before it was verified; round 1
    # (regenerate) restarted the stream and streamed Warsaw, again before verification.
    assert verifier.draft_at_verify == [FIRST, SECOND]
    assert shown.restarts == 1 and shown.text == SECOND
    assert len(shown.pieces) > 2 * 2  # piece by piece, not an answer at a time
    assert "".join(shown.pieces) == FIRST + SECOND
    assert [r.action for r in answer.rounds] == ["answer", "regenerate"]
    assert [r.short_answer for r in answer.rounds] == ["Paris", "Warsaw"]  # each round's
    assert answer.answer == "Marie Curie was born in Warsaw."
    assert answer.sentences[0].verification.label == "supported"
    assert answer.cost.llm_calls == 2  # streaming counted each call once


def test_a_generator_that_does_not_stream_writes_its_answer_once(tmp_path: Path) -> None:
    fake = ScriptedStreamingChatModel([answer_json(("Marie Curie was born in Warsaw.",
                                                    ["1"]), short_answer="Warsaw")])
    shown = TextBuffer()
    verifier = StandInVerifier(shown)

    answer = pipeline(fake, verifier, tmp_path, output="json").ask(QUESTION, mode="rag",
                                                                  stream=shown)

    # Raw JSON is not an answer to show: the parsed text comes in one piece, still
    # before verification.
    assert shown.pieces == ["Marie Curie was born in Warsaw."]
    assert verifier.draft_at_verify == ["Marie Curie was born in Warsaw."]
    assert answer.short_answer == "Warsaw"


def test_without_a_stream_nothing_changes(tmp_path: Path) -> None:
    fake = ScriptedChatModel([SECOND])
    verifier = StandInVerifier(TextBuffer())
    answer = pipeline(fake, verifier, tmp_path).ask(QUESTION, mode="rag")
    assert answer.answer == "Marie Curie was born in Warsaw." and fake.calls == 1
