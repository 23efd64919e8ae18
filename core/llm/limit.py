"""Bound the number of LLM requests in flight, across threads and event loops.

`asyncio.Semaphore` binds to one event loop; kgrag calls models from several (the sync
`complete` wrapper runs a fresh loop per call, Prefect runs tasks in worker threads), so
the slots here are counted under a thread lock and waiters are woken on their own loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from core.llm.base import (
    ChatModel,
    ChatModelLayer,
    Completion,
    CompletionRequest,
    TextSink,
    astream,
)


class RequestSlots:
    """A counting semaphore that async callers on any loop or thread can share."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._free = limit
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut)
            self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    raise
            # A slot was handed to us just as we were cancelled: pass it on.
            if not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if loop.is_closed():
                    continue
                # Hand the slot straight to the waiter, on the waiter's own loop.
                loop.call_soon_threadsafe(self._wake, fut)
                return
            self._free += 1

    def _wake(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            self.release()
        else:
            fut.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class ConcurrencyLimitedChatModel(ChatModelLayer):
    """At most `limit` requests reach `inner` at once; the rest wait their turn (FIFO)."""

    def __init__(self, inner: ChatModel, limit: int) -> None:
        super().__init__(inner)
        self.slots = RequestSlots(limit)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        async with self.slots:
            return await self.inner.acomplete(request)

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        """Streamed; the slot is held until the stream ends."""
        async with self.slots:
            return await astream(self.inner, request, sink)
