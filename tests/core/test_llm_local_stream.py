"""The local backend's streaming (pieces relayed to a sink; the stop on repeated lines),
over a stand-in llama object (named as such): the real model's use of it is in
test_llm_local.py (marked llm)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.llm.base import CompletionRequest, TextBuffer, complete
from core.llm.local import LlamaCppChatModel


class FakeStreamingLlama:
    """Streams scripted pieces like llama-cpp-python's create_chat_completion(stream=True)."""

    def __init__(self, pieces: list[str], prompt_tokens: int = 50, delay_s: float = 0.0
                 ) -> None:
        self.pieces = pieces
        self.n_tokens = prompt_tokens
        self.delay_s = delay_s
        self.closed = False
        self.sent = 0
        self.threads: set[str] = set()

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        assert kwargs["stream"] is True

        def gen() -> Iterator[dict[str, Any]]:
            try:
                for piece in self.pieces:
                    self.threads.add(threading.current_thread().name)
                    time.sleep(self.delay_s)
                    self.sent += 1
                    self.n_tokens += 1
                    yield {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
                yield {"choices": [{"delta": {}, "finish_reason": "length"}]}
            finally:
                self.closed = True

        return gen()


def test_a_reply_looping_over_its_lines_is_cut_at_the_third_repeat() -> None:
    loop = ["A | p | B", "\n", "C | q | D", "\n"] * 10
    llama = FakeStreamingLlama(loop)
    response = LlamaCppChatModel._streamed(llama, {"messages": []}, repeats=3)
    text = response["choices"][0]["message"]["content"]
    assert text.splitlines()[:2] == ["A | p | B", "C | q | D"]
    assert text.count("A | p | B") == 3  # the two originals' repeats 1 and 3 + the original
    assert llama.sent < len(loop) and llama.closed  # generation stopped early
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"] == {"prompt_tokens": 50, "completion_tokens": llama.sent}


def test_a_reply_without_repeats_streams_to_its_end() -> None:
    llama = FakeStreamingLlama(["A | p | B", "\n", "C | q | D"])
    response = LlamaCppChatModel._streamed(llama, {"messages": []}, repeats=3)
    assert response["choices"][0]["message"]["content"] == "A | p | B\nC | q | D"
    assert response["choices"][0]["finish_reason"] == "length"


def test_a_reply_in_prose_instead_of_the_line_format_stops_at_its_first_line() -> None:
    prose = ["History of the land", " spans tens of thousands of years", ".", "\n",
             "More prose", "\n"] + ["and more "] * 50
    llama = FakeStreamingLlama(prose)
    response = LlamaCppChatModel._streamed(llama, {"messages": []}, repeats=3, marker="|")
    assert response["usage"]["completion_tokens"] == 4  # stopped at the first line's end
    long_line = FakeStreamingLlama(["word " * 10] * 40)  # no newline at all
    response = LlamaCppChatModel._streamed(long_line, {"messages": []}, marker="|")
    assert len(response["choices"][0]["message"]["content"]) < 400


def model_on(llama: FakeStreamingLlama) -> LlamaCppChatModel:
    model = LlamaCppChatModel(Path("stand-in.gguf"), model_name="stand-in")
    model._llama = llama  # "loaded": no file is read
    return model


ASK = CompletionRequest.of([{"role": "user", "content": "Where was Marie Curie born?"}])


def test_astream_relays_each_piece_to_the_callers_thread_in_order() -> None:
    pieces = ["Answer", ":", " Warsaw", "\n", "She", " was", " born", " there", " [1]", "."]
    llama = FakeStreamingLlama(pieces)
    seen_on: set[str] = set()

    class Sink(TextBuffer):
        def write(self, delta: str) -> None:
            seen_on.add(threading.current_thread().name)
            super().write(delta)

    sink = Sink()
    result = complete(model_on(llama), ASK, sink)

    assert sink.pieces == pieces
    assert result.text == "".join(pieces)
    assert (result.prompt_tokens, result.completion_tokens) == (50, len(pieces))
    assert seen_on == {threading.current_thread().name}  # not llama's worker thread
    assert llama.threads and not llama.threads & seen_on


def test_a_sink_that_fails_stops_the_generation() -> None:
    llama = FakeStreamingLlama(["word "] * 200, delay_s=0.005)

    class Failing(TextBuffer):
        def write(self, delta: str) -> None:
            super().write(delta)
            if len(self.pieces) == 3:
                raise RuntimeError("the page went away")

    model = model_on(llama)
    with pytest.raises(RuntimeError, match="went away"):
        complete(model, ASK, Failing())
    model._worker.shutdown(wait=True)  # the generation has ended, not run on to its end
    assert llama.closed and llama.sent < 200
