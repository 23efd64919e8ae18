"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.errors import LLMCallError
from core.llm.base import CompletionRequest, LLMRequestError, complete
from core.llm.openai_compat import OpenAICompatChatModel
from core.llm.retry import RetryingChatModel

SCHEMA = {
    "title": "Triples list",
    "type": "object",
    "properties": {"triples": {"type": "array", "items": {"type": "string"}}},
    "required": ["triples"],
}
Reply = tuple[int, dict[str, Any]]


def ok(content: str) -> Reply:
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "served-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content},
             "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


@dataclass
class FakeServer:
    """Records each request; `answer(path, body)` decides the reply."""

    url: str
    answer: Callable[[str, dict[str, Any]], Reply] = lambda path, body: ok("hello")
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append((self.path, dict(self.headers), body))
            status, payload = state.answer(self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def ask(**kw: Any) -> CompletionRequest:
    return CompletionRequest.of([{"role": "user", "content": "extract"}], **kw)


def test_posts_chat_completions_and_reads_the_reply(server: FakeServer) -> None:
    model = OpenAICompatChatModel(server.url, "my-model", api_key="sk-test", max_tokens=64)
    result = complete(model, ask())

    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test"
    assert body["model"] == "my-model" and body["max_tokens"] == 64
    assert body["messages"] == [{"role": "user", "content": "extract"}]
    assert "response_format" not in body
    assert (result.text, result.model, result.prompt_tokens, result.completion_tokens) == (
        "hello", "served-model", 11, 5
    )


def test_schema_goes_out_as_strict_json_schema_response_format(server: FakeServer) -> None:
    server.answer = lambda path, body: ok('{"triples": []}')
    model = OpenAICompatChatModel(server.url, "m")
    complete(model, ask(json_schema=SCHEMA, temperature=0.2))

    body = server.requests[0][2]
    assert body["temperature"] == 0.2
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Triples_list", "schema": SCHEMA, "strict": True},
    }


def test_falls_back_to_guided_json_when_response_format_is_refused(
    server: FakeServer,
) -> None:
    def old_vllm(path: str, body: dict[str, Any]) -> Reply:
        if "response_format" in body:
            return 400, {"object": "error", "message": "json_schema is not supported"}
        return ok('{"triples": ["a"]}')

    server.answer = old_vllm
    model = OpenAICompatChatModel(server.url, "m")
    assert complete(model, ask(json_schema=SCHEMA)).text == '{"triples": ["a"]}'
    assert server.requests[1][2]["guided_json"] == SCHEMA
    complete(model, ask(json_schema=SCHEMA))  # remembered: no refused attempt
    assert len(server.requests) == 3 and "guided_json" in server.requests[2][2]


def test_a_refusal_of_both_forms_reports_the_first(server: FakeServer) -> None:
    server.answer = lambda path, body: (400, {"error": {"message": "prompt is too long"}})
    model = OpenAICompatChatModel(server.url, "m")
    with pytest.raises(LLMRequestError, match="HTTP 400: prompt is too long"):
        complete(model, ask(json_schema=SCHEMA))


def test_server_errors_are_retried_and_auth_errors_are_not(server: FakeServer) -> None:
    answers = iter([(503, {"error": "loading"}), ok("fine")])
    server.answer = lambda path, body: next(answers)
    model = RetryingChatModel(OpenAICompatChatModel(server.url, "m"), base_delay_s=0)
    assert complete(model, ask()).text == "fine"

    server.answer = lambda path, body: (401, {"error": {"message": "bad key"}})
    with pytest.raises(LLMRequestError) as info:
        complete(model, ask())
    assert "KGRAG_LLM_API_KEY" in info.value.hint
    assert len(server.requests) == 3


def test_timeout_is_an_llm_call_error_with_a_fix(server: FakeServer) -> None:
    def slow(path: str, body: dict[str, Any]) -> Reply:
        time.sleep(1.0)
        return ok("late")

    server.answer = slow
    model = OpenAICompatChatModel(server.url, "m", timeout_s=0.2)
    with pytest.raises(LLMCallError, match=re.escape("did not answer within 0.2 s")) as info:
        complete(model, ask())
    assert "KGRAG_LLM_TIMEOUT_S" in info.value.hint


def test_connection_refused_names_the_url_and_how_to_fix() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAICompatChatModel(f"http://127.0.0.1:{port}/v1", "m")
    with pytest.raises(LLMCallError) as info:
        complete(model, ask())
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in str(info.value)
    assert "KGRAG_LLM_BASE_URL" in info.value.hint
    assert not isinstance(info.value, LLMRequestError)  # worth retrying


def test_non_openai_answers_are_explained(server: FakeServer) -> None:
    server.answer = lambda path, body: (200, {"hello": "world"})
    with pytest.raises(LLMCallError, match="without choices"):
        complete(OpenAICompatChatModel(server.url, "m"), ask())
