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
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeAlias

from core.llm.base import Completion, CompletionRequest

Step: TypeAlias = str | Completion | BaseException | Callable[[CompletionRequest], str | Completion]


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
        with self._lock:
            self.requests.append(request)
            step = self._script.popleft() if self._script else self.default
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return self._play(step, request)
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
