"""The local backend's stop on repeated lines, over a stand-in llama object (named as
such): the real model's use of it is in test_llm_local.py (marked llm)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.llm.local import LlamaCppChatModel


class FakeStreamingLlama:
    """Streams scripted pieces like llama-cpp-python's create_chat_completion(stream=True)."""

    def __init__(self, pieces: list[str], prompt_tokens: int = 50) -> None:
        self.pieces = pieces
        self.n_tokens = prompt_tokens
        self.closed = False
        self.sent = 0

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        assert kwargs["stream"] is True

        def gen() -> Iterator[dict[str, Any]]:
            try:
                for piece in self.pieces:
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
