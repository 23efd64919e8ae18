"""Retries with exponential backoff and jitter, and output validation for JSON requests."""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jsonschema

from core.errors import LLMCallError, LLMOutputError
from core.llm.base import (
    ChatModel,
    ChatModelLayer,
    Completion,
    CompletionRequest,
    LLMRequestError,
    TextSink,
    astream,
)


class RetryingChatModel(ChatModelLayer):
    """Retries failed calls; for requests with a `json_schema`, also retries output that is
    not valid JSON for the schema.

    Failed calls (`LLMCallError`, timeouts, connection errors, HTTP 5xx / 429) wait
    `base_delay_s * 2**attempt` (capped at `max_delay_s`, with jitter) and go again, at most
    `max_retries` times, then raise `LLMCallError`. A refused request (`LLMRequestError`)
    is raised at once. Invalid output is re-sampled at once with a new seed and a
    temperature of at least `resample_temperature`, since a greedy re-run would repeat it;
    when every attempt is invalid, `LLMOutputError` shows the last output. Invalid output
    that was cut off at max_tokens is never re-sampled at the same budget (it would most
    likely be cut off again): it is asked once more with twice the budget, then given up.
    Streamed (`astream`), every attempt streams; one that follows an attempt which wrote
    text first restarts the sink, so the text since the last restart is always one
    attempt's.
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        max_retries: int = 3,
        base_delay_s: float = 0.5,
        max_delay_s: float = 20.0,
        resample_temperature: float = 0.7,
        validate_schema: bool = True,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        super().__init__(inner)
        self.max_retries = max(0, max_retries)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.resample_temperature = resample_temperature
        self.validate_schema = validate_schema
        self._sleep = sleep

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self._attempts(request, None)

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        return await self._attempts(request, _AttemptSink(sink))

    async def _attempts(self, request: CompletionRequest, sink: _AttemptSink | None
                        ) -> Completion:
        if request.json_schema is not None and self.validate_schema:
            _validator(_schema_key(request.json_schema))  # a bad schema fails before any call
        attempts = self.max_retries + 1
        current = request
        doubled = False
        failure: Exception | None = None
        for attempt in range(attempts):
            try:
                if sink is None:
                    result = await self.inner.acomplete(current)
                else:
                    sink.begin_attempt()
                    result = await astream(self.inner, current, sink)
            except LLMRequestError:
                raise
            except Exception as exc:
                if not is_retryable(exc):
                    raise
                failure = exc
                if attempt + 1 < attempts:
                    await self._sleep(self.backoff_s(attempt))
                continue
            if request.json_schema is None:
                return result
            problem = json_problem(result.text, request.json_schema, self.validate_schema)
            if problem is None:
                return result
            failure = _invalid_output(self.model_name, result, problem, attempt + 1)
            if result.finish_reason == "length":
                if doubled:
                    break  # cut off again with twice the budget: give up
                doubled = True
                budget = 2 * max(current.max_tokens or 0, result.completion_tokens)
                current = current.with_(max_tokens=budget)
                continue
            current = request.with_(
                seed=request.seed + attempt + 1,
                temperature=max(request.temperature or 0.0, self.resample_temperature),
            )
        assert failure is not None
        if isinstance(failure, LLMOutputError):
            raise failure
        raise _gave_up(self.model_name, failure, attempts) from failure

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry number `attempt + 1`: exponential, capped, jittered 50-100%."""
        delay = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return delay * random.uniform(0.5, 1.0)


class _AttemptSink:
    """Passes an attempt's text on; restarts the caller's sink before an attempt that
    follows one which wrote text (a failure mid-stream, or invalid output)."""

    def __init__(self, sink: TextSink) -> None:
        self.sink = sink
        self.written = False

    def begin_attempt(self) -> None:
        if self.written:
            self.sink.restart()
            self.written = False

    def write(self, delta: str) -> None:
        self.written = self.written or bool(delta)
        self.sink.write(delta)

    def restart(self) -> None:  # an inner layer's own restart
        self.sink.restart()
        self.written = False


def is_retryable(exc: BaseException) -> bool:
    """Whether sending the same request again may succeed."""
    if isinstance(exc, LLMRequestError):
        return False
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code in (408, 429)
    return isinstance(exc, LLMCallError | TimeoutError | ConnectionError | httpx.TransportError)


def json_problem(text: str, schema: dict[str, Any], validate_schema: bool = True) -> str | None:
    """Why `text` is not a JSON value valid for `schema`, or None when it is."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    if validate_schema:
        error = jsonschema.exceptions.best_match(_validator(_schema_key(schema)).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            return f"does not match the schema at {where}: {error.message}"
    return None


def _schema_key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True)


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise LLMRequestError(
            f"the requested json_schema is not a valid JSON Schema: {exc.message}",
            hint="fix the schema in the stage that sends the request",
        ) from None
    return cls(schema)


def _invalid_output(model: str, result: Completion, problem: str, attempts: int) -> LLMOutputError:
    excerpt = result.text if len(result.text) <= 300 else result.text[:300] + "..."
    if result.finish_reason == "length":
        hint = "the output was cut off at max_tokens: raise max_tokens (KGRAG_LLM_MAX_TOKENS)"
    else:
        hint = "use a stronger model (KGRAG_LLM_MODEL) or a simpler schema / shorter input"
    return LLMOutputError(
        f"{model} gave invalid output after {attempts} attempt(s): {problem}; "
        f"output was {excerpt!r}",
        hint=hint,
    )


def _gave_up(model: str, exc: Exception, attempts: int) -> LLMCallError:
    if isinstance(exc, LLMCallError):
        message, hint = exc.message, exc.hint
    else:
        message, hint = f"{type(exc).__name__}: {exc}", "check the LLM backend: `kgrag doctor`"
    return LLMCallError(f"{model}: LLM call failed after {attempts} attempt(s): {message}", hint)
