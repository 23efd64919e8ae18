"""The one LLM interface. Backends implement `acomplete`; cross-cutting concerns (cache,
retry, usage counters) are layers that wrap any `ChatModel` (microsoft/graphrag style)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class CompletionRequest:
    """One chat completion. `json_schema` constrains the output (grammar / guided decoding)."""

    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int = 0

    @staticmethod
    def of(
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> CompletionRequest:
        return CompletionRequest(tuple(dict(m) for m in messages), json_schema, max_tokens,
                                 temperature)


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached: bool = False


@dataclass
class Usage:
    """Counters a flow reports: model calls, cache hits, tokens."""

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    by_model: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "failed_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
        }


@runtime_checkable
class ChatModel(Protocol):
    """Anything that completes chat requests. Only the async core is required."""

    model_name: str

    async def acomplete(self, request: CompletionRequest) -> Completion: ...


def complete(model: ChatModel, request: CompletionRequest) -> Completion:
    """Sync wrapper around the async core (for callers not already in an event loop)."""
    return asyncio.run(model.acomplete(request))


async def acomplete_many(
    model: ChatModel, requests: Sequence[CompletionRequest], concurrency: int
) -> list[Completion | BaseException]:
    """Run requests with at most `concurrency` in flight; failures are returned, not raised,
    so one bad chunk never sinks a batch."""
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(req: CompletionRequest) -> Completion | BaseException:
        async with sem:
            try:
                return await model.acomplete(req)
            except Exception as exc:
                return exc

    return list(await asyncio.gather(*(one(r) for r in requests)))
