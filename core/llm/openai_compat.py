"""Backend for any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama).

Speaks `POST {base_url}/chat/completions` with httpx; no OpenAI SDK. A `json_schema` is
sent as `response_format: {"type": "json_schema", ...}` (guided decoding on vLLM); a
server that refuses that field (vLLM before 0.6) gets vLLM's `guided_json` instead, and
the backend remembers which form worked.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx

from core import timing
from core.errors import LLMCallError
from core.llm.base import Completion, CompletionRequest, LLMRequestError, TextSink

SchemaMode = Literal["response_format", "guided_json"]

_FIX_CONNECT = (
    "start the server (infra/ has a vLLM compose file), set KGRAG_LLM_BASE_URL to where it "
    "listens (ending in /v1), or use the in-process model: KGRAG_LLM_BACKEND=local"
)


class OpenAICompatChatModel:
    """Chat completions from an OpenAI-compatible server.

        >>> model = OpenAICompatChatModel("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct")
        >>> model.url
        'http://127.0.0.1:8000/v1/chat/completions'

    Connections are pooled per event loop (an httpx client cannot cross loops); `aclose`
    closes the pool of the running loop.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        max_tokens: int = 768,
        temperature: float = 0.0,
        schema_mode: SchemaMode = "response_format",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model_name = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.schema_mode: SchemaMode = schema_mode
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                headers=headers,
                transport=self._transport,
            )
            self._clients[loop] = client
        return client

    async def amodel_identity(self) -> str:
        """The model as the server reports it (core.llm.identity), for the response cache."""
        from core.llm.identity import served_model_identity

        return await served_model_identity(self._client(), self.base_url, self.model_name)

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def body(self, request: CompletionRequest, mode: SchemaMode | None = None) -> dict[str, Any]:
        """The JSON body sent for `request`."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": list(request.messages),
            "max_tokens": request.max_tokens or self.max_tokens,
            "temperature": (
                self.temperature if request.temperature is None else request.temperature
            ),
            "seed": request.seed,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.grammar:
            body["guided_grammar"] = request.grammar
        if request.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs
        if request.json_schema is not None:
            if (mode or self.schema_mode) == "response_format":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": _schema_name(request.json_schema),
                        "schema": request.json_schema,
                        "strict": True,
                    },
                }
            else:
                body["guided_json"] = request.json_schema
        return body

    async def acomplete(self, request: CompletionRequest) -> Completion:
        start = time.perf_counter()
        try:
            return await self._with_schema_fallback(request, self._call)
        finally:
            timing.add("llm server", time.perf_counter() - start)

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        """The completion as server-sent events (`stream: true`), each content delta
        written to `sink` as it arrives. Requests for log-probabilities are not streamed
        (their text is written whole)."""
        if request.top_logprobs:
            result = await self.acomplete(request)
            sink.write(result.text)
            return result
        start = time.perf_counter()
        try:
            return await self._with_schema_fallback(
                request, lambda body: self._stream(body, sink))
        finally:
            timing.add("llm server", time.perf_counter() - start)

    async def _with_schema_fallback(
        self, request: CompletionRequest,
        send: Callable[[dict[str, Any]], Awaitable[Completion]],
    ) -> Completion:
        mode = self.schema_mode
        try:
            return await send(self.body(request, mode))
        except LLMRequestError as refused:
            if request.json_schema is None or mode != "response_format":
                raise
            # Older vLLM rejects response_format json_schema; it knows guided_json.
            try:
                result = await send(self.body(request, "guided_json"))
            except LLMRequestError:
                raise refused from None
            self.schema_mode = "guided_json"
            return result

    async def _call(self, body: dict[str, Any]) -> Completion:
        return self._completion(await self._post(body))

    async def _stream(self, body: dict[str, Any], sink: TextSink) -> Completion:
        """POST with `stream: true`; reads the `data:` events until `[DONE]`. A refusal
        (HTTP 4xx) comes before any text, so the schema fallback never repeats text; a
        stream cut off before its end is an `LLMCallError` (retried)."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        text, pieces, finish, model = "", 0, "", self.model_name
        usage: dict[str, Any] = {}
        try:
            async with self._client().stream("POST", self.url, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _status_error(self.url, response)
                async for line in response.aiter_lines():
                    data = _event(line, self.url)
                    if isinstance(data, str):  # [DONE]
                        finish = finish or "stop"
                        break
                    if data is None:
                        continue
                    model = str(data.get("model") or model)
                    usage = data.get("usage") or usage
                    for choice in data.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            text += piece
                            pieces += 1
                            sink.write(piece)
                        finish = str(choice.get("finish_reason") or finish)
        except httpx.TimeoutException as exc:
            raise self._timeout(exc) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if not finish:
            raise LLMCallError(f"the stream from {self.url} ended before the answer did "
                               f"(after {len(text)} characters)",
                               hint="the server may have restarted; see its log")
        return Completion(text=text, model=model,
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or pieces),
                          finish_reason=finish)

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client().post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise self._timeout(exc) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise _status_error(self.url, response)
        try:
            data = response.json()
        except ValueError:
            raise LLMCallError(
                f"LLM server at {self.url} answered with non-JSON: {response.text[:200]!r}",
                hint="KGRAG_LLM_BASE_URL must point at an OpenAI-compatible API (ending in /v1)",
            ) from None
        if not isinstance(data, dict):
            raise LLMCallError(f"LLM server at {self.url} answered {str(data)[:200]!r}")
        return data

    def _timeout(self, exc: httpx.TimeoutException) -> LLMCallError:
        return LLMCallError(
            f"LLM server at {self.url} did not answer within {self.timeout_s:g} s "
            f"({type(exc).__name__})",
            hint="raise KGRAG_LLM_TIMEOUT_S, lower KGRAG_LLM_CONCURRENCY, or check the "
            "server's load",
        )

    def _unreachable(self, exc: httpx.TransportError) -> LLMCallError:
        return LLMCallError(
            f"cannot reach the LLM server at {self.url}: {exc or type(exc).__name__}",
            hint=_FIX_CONNECT,
        )

    def _completion(self, data: dict[str, Any]) -> Completion:
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise LLMCallError(
                f"LLM server at {self.url} answered without choices: {str(data)[:200]!r}",
                hint="KGRAG_LLM_BASE_URL must point at an OpenAI-compatible API (ending in /v1)",
            ) from None
        usage = data.get("usage") or {}
        content = (choice.get("logprobs") or {}).get("content") or []
        return Completion(
            text=(choice.get("message") or {}).get("content") or "",
            model=str(data.get("model") or self.model_name),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            tokens=tuple(str(t.get("token", "")) for t in content),
            top_logprobs=tuple({str(a.get("token", "")): float(a.get("logprob", -1e9))
                                for a in t.get("top_logprobs") or []} for t in content),
        )


def _event(line: str, url: str) -> dict[str, Any] | str | None:
    """One server-sent event line: its JSON object, "[DONE]", or None (a blank line, a
    comment, another field)."""
    if not line.startswith("data:"):
        return None
    payload = line[len("data:"):].strip()
    if payload == "[DONE]":
        return payload
    try:
        data = json.loads(payload)
    except ValueError:
        raise LLMCallError(f"LLM server at {url} streamed non-JSON: {payload[:200]!r}") from None
    if not isinstance(data, dict):
        raise LLMCallError(f"LLM server at {url} streamed {payload[:200]!r}")
    if "error" in data:  # vLLM reports a failure mid-stream as an event
        raise LLMCallError(f"LLM server at {url} failed mid-stream: {str(data['error'])[:300]}")
    return data


def _schema_name(schema: dict[str, Any]) -> str:
    """OpenAI requires the name to match ^[a-zA-Z0-9_-]{1,64}$."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "output"))[:64]


def _status_error(url: str, response: httpx.Response) -> LLMCallError:
    code = response.status_code
    detail = _error_detail(response)
    message = f"LLM server at {url} answered HTTP {code}: {detail}"
    if code in (401, 403):
        return LLMRequestError(message, hint="set KGRAG_LLM_API_KEY to a key the server accepts")
    if code == 404:
        return LLMRequestError(
            message,
            hint="check KGRAG_LLM_BASE_URL (it ends in /v1) and that KGRAG_LLM_MODEL is a "
            "model the server serves (GET /v1/models lists them)",
        )
    if code in (408, 429) or code >= 500:
        return LLMCallError(message, hint="the server is overloaded or failing; see its log")
    return LLMRequestError(message, hint="the server refused the request; see its message")


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        if isinstance(err, dict):
            err = err.get("message", err)
        return str(err)[:300]
    return str(data)[:300]
