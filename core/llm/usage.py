"""Counters of LLM use (calls, cache hits, failures, tokens, time) that flows report."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Awaitable

from core.llm.base import (
    ChatModel,
    ChatModelLayer,
    Completion,
    CompletionRequest,
    TextSink,
    Usage,
    astream,
)


class UsageCountingChatModel(ChatModelLayer):
    """Counts every request that passes through it; safe across threads and event loops.

    Put it outermost so that cache hits count as calls too:

        >>> from core.llm.testing import ScriptedChatModel
        >>> from core.llm.base import CompletionRequest, complete
        >>> counted = UsageCountingChatModel(ScriptedChatModel(["two words"]))
        >>> _ = complete(counted, CompletionRequest.of([{"role": "user", "content": "hi"}]))
        >>> counted.usage.calls, counted.usage.completion_tokens
        (1, 2)
    """

    def __init__(self, inner: ChatModel) -> None:
        super().__init__(inner)
        self._usage = Usage()
        self._lock = threading.Lock()

    @property
    def usage(self) -> Usage:
        """A snapshot of the counters (later calls do not change it)."""
        return self.snapshot()

    def snapshot(self) -> Usage:
        with self._lock:
            return copy.deepcopy(self._usage)

    def reset(self) -> Usage:
        """Zero the counters; returns what they held."""
        with self._lock:
            old, self._usage = self._usage, Usage()
        return old

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self._counted(self.inner.acomplete(request))

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        """Streamed, counted once when complete (the pieces are not counted)."""
        return await self._counted(astream(self.inner, request, sink))

    async def _counted(self, call: Awaitable[Completion]) -> Completion:
        start = time.perf_counter()
        try:
            result = await call
        except Exception:
            with self._lock:
                self._usage.failed_calls += 1
                self._usage.seconds += time.perf_counter() - start
            raise
        elapsed = time.perf_counter() - start
        with self._lock:
            u = self._usage
            u.calls += 1
            u.by_model[result.model] = u.by_model.get(result.model, 0) + 1
            if result.cached:
                u.cached_calls += 1
            else:
                u.prompt_tokens += result.prompt_tokens
                u.completion_tokens += result.completion_tokens
                u.seconds += elapsed
        return result
