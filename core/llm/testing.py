"""A fake `ChatModel` for tests: replies from a script instead of a model.

    >>> from core.llm.base import CompletionRequest, complete
    >>> fake = ScriptedChatModel(['{"entities": []}', TimeoutError("slow")])
    >>> req = CompletionRequest.of([{"role": "user", "content": "extract"}])
    >>> complete(fake, req).text
    '{"entities": []}'

Each script step is one of: a `str` (the completion text), a `Completion` (returned as
is), an exception instance (raised), or a callable taking the request and returning a
`str` / `Completion`. When the script runs out, `default` answers (same kinds of step);
without a default the fake raises `AssertionError`, so a test never gets a silent reply.

`ScriptedStreamingChatModel` streams the same replies word by word (`astream`); its extra
step `BrokenStream` writes some text and then fails, like a connection dropped mid-answer.

    >>> from core.llm.base import TextBuffer
    >>> buf = TextBuffer()
    >>> complete(ScriptedStreamingChatModel(["Warsaw [1]."]), req, buf).text, buf.pieces
    ('Warsaw [1].', ['Warsaw ', '[1].'])
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from core.llm.base import Completion, CompletionRequest, TextSink


@dataclass(frozen=True)
class BrokenStream:
    """A step that streams `text` and then raises `error` (without streaming: raises)."""

    text: str
    error: BaseException


Step: TypeAlias = (str | Completion | BaseException | BrokenStream
                   | Callable[[CompletionRequest], str | Completion])


class ScriptedChatModel:
    """Fake chat model: scripted replies and errors, with a record of what it was asked.

    `requests` lists every request in arrival order; `peak_in_flight` is the most calls
    that were running at once (each call sleeps `delay_s` first, so overlaps show).
    """

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        default: Step | None = None,
        model_name: str = "scripted",
        delay_s: float = 0.0,
    ) -> None:
        self.model_name = model_name
        self.default = default
        self.delay_s = delay_s
        self.requests: list[CompletionRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._script: deque[Step] = deque(script)
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def push(self, *steps: Step) -> None:
        """Append steps to the script."""
        with self._lock:
            self._script.extend(steps)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self._answer(request, None)

    async def _answer(self, request: CompletionRequest, sink: TextSink | None) -> Completion:
        with self._lock:
            self.requests.append(request)
            step = self._script.popleft() if self._script else self.default
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if sink is not None and isinstance(step, BrokenStream):
                await _write_words(step.text, sink)
            result = self._play(step, request)
            if sink is not None:
                await _write_words(result.text, sink)
            return result
        finally:
            with self._lock:
                self.in_flight -= 1

    def _play(self, step: Step | None, request: CompletionRequest) -> Completion:
        if step is None:
            raise AssertionError(
                f"ScriptedChatModel ran out of script at call {self.calls}: "
                f"{request.messages[-1]['content'][:80]!r}"
            )
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, BrokenStream):
            raise step.error
        reply = step(request) if callable(step) else step
        if isinstance(reply, Completion):
            return reply
        prompt_words = sum(len(m.get("content", "").split()) for m in request.messages)
        return Completion(
            text=reply,
            model=self.model_name,
            prompt_tokens=prompt_words,
            completion_tokens=len(reply.split()),
        )


class ScriptedStreamingChatModel(ScriptedChatModel):
    """`ScriptedChatModel` that streams: `astream` writes each reply word by word (with
    the whitespace after it, so the pieces join to the reply), yielding to the event
    loop between pieces as a real stream does."""

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        return await self._answer(request, sink)


async def _write_words(text: str, sink: TextSink) -> None:
    for piece in re.findall(r"\s*\S+\s*|\s+", text):
        sink.write(piece)
        await asyncio.sleep(0)
