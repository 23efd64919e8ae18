"""The one LLM interface. Backends implement `acomplete`; cross-cutting concerns (cache,
retry, usage counters, concurrency limit) are layers that wrap any `ChatModel`
(microsoft/graphrag style).

    >>> from core.llm.testing import ScriptedChatModel
    >>> model = ScriptedChatModel(['{"ok": true}'])
    >>> complete(model, CompletionRequest.of([{"role": "user", "content": "hi"}])).text
    '{"ok": true}'
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from core.errors import LLMCallError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class CompletionRequest:
    """One chat completion. `json_schema` constrains the output (grammar / guided decoding).

    `max_tokens` / `temperature` left as None take the backend's defaults (from settings).
    `top_logprobs` > 0 asks for that many most likely tokens, with their log-probabilities,
    at each generated position (`Completion.top_logprobs`); such requests skip the cache.
    `stop`: strings that end the output where they first appear (not included in it).
    `stop_after_repeats` > 0 ends the output once that many of its lines repeat an earlier
    line (a small model looping); `line_marker` ends it at the first line without that
    string (a model writing prose instead of the asked line format). Both: the local
    backend only, a server ignores them. `grammar`: a GBNF grammar the output must follow
    (llama.cpp; sent as vLLM's `guided_grammar` to a server).
    """

    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int = 0
    top_logprobs: int = 0
    stop: tuple[str, ...] = ()
    stop_after_repeats: int = 0
    line_marker: str = ""
    grammar: str | None = None

    @staticmethod
    def of(
        messages: Sequence[Message],
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int = 0,
        stop: Sequence[str] = (),
    ) -> CompletionRequest:
        return CompletionRequest(
            tuple(dict(m) for m in messages), json_schema, max_tokens, temperature, seed,
            stop=tuple(stop),
        )

    def with_(self, **changes: Any) -> CompletionRequest:
        """A copy with some fields changed (e.g. a new seed for a re-sample)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached: bool = False
    # With `CompletionRequest.top_logprobs`: the generated tokens, and at each of them the
    # most likely tokens (text -> log-probability) before sampling.
    tokens: tuple[str, ...] = ()
    top_logprobs: tuple[dict[str, float], ...] = ()
    # The model's own counters where it has them (llama.cpp): prompt evaluation and
    # decoding seconds of this call; the rest of its wall time is sampling, grammar, I/O.
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0


@dataclass
class Usage:
    """Counters a flow reports.

    `calls` counts answered requests, cache hits included; `cached_calls` those answered
    from the cache; `failed_calls` requests that raised. Tokens and seconds are what the
    model actually spent: cache hits add neither tokens nor model time.
    """

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    by_model: dict[str, int] = field(default_factory=dict)

    @property
    def model_calls(self) -> int:
        """Requests that reached a model (not served from the cache)."""
        return self.calls - self.cached_calls

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __sub__(self, other: Usage) -> Usage:
        """What was spent between two snapshots: `after - before`."""
        return Usage(
            calls=self.calls - other.calls,
            cached_calls=self.cached_calls - other.cached_calls,
            failed_calls=self.failed_calls - other.failed_calls,
            prompt_tokens=self.prompt_tokens - other.prompt_tokens,
            completion_tokens=self.completion_tokens - other.completion_tokens,
            seconds=self.seconds - other.seconds,
            by_model={
                m: n - other.by_model.get(m, 0)
                for m, n in self.by_model.items()
                if n - other.by_model.get(m, 0)
            },
        )

    def __add__(self, other: Usage) -> Usage:
        """Spending of two clients together (e.g. several task-runner workers)."""
        by_model = dict(self.by_model)
        for m, n in other.by_model.items():
            by_model[m] = by_model.get(m, 0) + n
        return Usage(
            calls=self.calls + other.calls,
            cached_calls=self.cached_calls + other.cached_calls,
            failed_calls=self.failed_calls + other.failed_calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            seconds=self.seconds + other.seconds,
            by_model=by_model,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "failed_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
        }


class LLMRequestError(LLMCallError):
    """The request itself was refused (prompt longer than the context, bad parameters,
    wrong API key): sending it again cannot help, so retry layers do not."""


@runtime_checkable
class ChatModel(Protocol):
    """Anything that completes chat requests. Only the async core is required."""

    model_name: str

    async def acomplete(self, request: CompletionRequest) -> Completion: ...


class TextSink(Protocol):
    """Where a streamed completion's text goes while the model writes it.

    `write` gets each new piece, in order; `restart` says that the text written so far is
    void (an attempt failed or was invalid and is tried again) and the next attempt's text
    follows. After the call returns, the text written since the last restart is the
    completion's text.
    """

    def write(self, delta: str) -> None: ...

    def restart(self) -> None: ...


class TextBuffer:
    """A `TextSink` that keeps what it is given and passes it on to `then`, if any: the
    text since the last restart, and every piece in order (what a test, a caller that
    must know whether anything was written, or a CLI echo needs).

        >>> buf = TextBuffer()
        >>> buf.write("Warsaw"); buf.write(" [1].")
        >>> buf.text, buf.pieces
        ('Warsaw [1].', ['Warsaw', ' [1].'])
    """

    def __init__(self, then: TextSink | None = None) -> None:
        self.text = ""
        self.pieces: list[str] = []
        self.restarts = 0
        self.then = then

    def write(self, delta: str) -> None:
        self.text += delta
        self.pieces.append(delta)
        if self.then is not None:
            self.then.write(delta)

    def restart(self) -> None:
        self.text = ""
        self.restarts += 1
        if self.then is not None:
            self.then.restart()


class ChatModelLayer:
    """Base of the layers: wraps `inner`, keeps its model name, passes `aclose` down.

    A layer that streams defines `astream` as well (the four in core.llm do); one that
    defines only `acomplete` is still streamed through, in one piece (`astream` below).
    """

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.model_name = inner.model_name

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self.inner.acomplete(request)

    async def aclose(self) -> None:
        await aclose_model(self.inner)


async def aclose_model(model: ChatModel) -> None:
    """Release what a model holds (HTTP connections, the loaded GGUF), if it holds any."""
    close = getattr(model, "aclose", None)
    if close is not None:
        await close()


async def astream(model: ChatModel, request: CompletionRequest, sink: TextSink) -> Completion:
    """The completion, its text written to `sink` as the model produces it.

    A model with an `astream` method streams (the local and OpenAI-compatible backends and
    the layers); any other (a scripted fake, a layer defining only `acomplete`) writes its
    whole text at once when it is complete.
    """
    stream: Callable[[CompletionRequest, TextSink], Awaitable[Completion]] | None = getattr(
        model, "astream", None)
    if stream is not None:
        return await stream(request, sink)
    result = await model.acomplete(request)
    if result.text:
        sink.write(result.text)
    return result


def complete(model: ChatModel, request: CompletionRequest, stream: TextSink | None = None
             ) -> Completion:
    """Sync wrapper around the async core (for callers not already in an event loop);
    with `stream`, the text is written to it as it is generated (`astream`).

    Inside a running loop (a notebook, an async framework) the call runs on a helper
    thread with its own loop, because `asyncio.run` cannot nest; `stream` is then written
    to from that thread. Otherwise it is written to from the calling thread.
    """
    call = model.acomplete(request) if stream is None else astream(model, request, stream)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the caller's context (core.timing) goes along
        run = contextvars.copy_context().run
        return pool.submit(run, asyncio.run, call).result()


async def acomplete_many(
    model: ChatModel, requests: Sequence[CompletionRequest], concurrency: int
) -> list[Completion | BaseException]:
    """Run requests with at most `concurrency` in flight; failures are returned, not raised,
    so one bad chunk never sinks a batch. Results are in the order of `requests`."""
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(req: CompletionRequest) -> Completion | BaseException:
        async with sem:
            try:
                return await model.acomplete(req)
            except Exception as exc:
                return exc

    return list(await asyncio.gather(*(one(r) for r in requests)))
