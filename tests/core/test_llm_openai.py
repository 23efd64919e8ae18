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
from core.llm.base import CompletionRequest, LLMRequestError, TextBuffer, complete
from core.llm.openai_compat import OpenAICompatChatModel
from core.llm.retry import RetryingChatModel

SCHEMA = {
    "title": "Triples list",
    "type": "object",
    "properties": {"triples": {"type": "array", "items": {"type": "string"}}},
    "required": ["triples"],
}


@dataclass
class Stream:
    """A reply as server-sent events: `pieces` of content, one event each, `delay_s`
    apart, then a usage event and `[DONE]` (`complete=False`: the connection just ends)."""

    pieces: list[str]
    delay_s: float = 0.0
    complete: bool = True
    sent_at: list[float] = field(default_factory=list)  # when each piece went out


Reply = tuple[int, "dict[str, Any] | Stream"]


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
            if isinstance(payload, Stream):
                self.send_events(payload)
                return
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def send_events(self, stream: Stream) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for piece in stream.pieces:
                time.sleep(stream.delay_s)
                self.event({"model": "served-model", "choices": [
                    {"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                stream.sent_at.append(time.monotonic())
            if stream.complete:
                self.event({"model": "served-model", "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.event({"model": "served-model", "choices": [],
                            "usage": {"prompt_tokens": 11, "completion_tokens": 4}})
                self.wfile.write(b"data: [DONE]\n\n")

        def event(self, data: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

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


# ----------------------------------------------------------------------------- streaming


class TimedText(TextBuffer):
    """Also keeps when each piece arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    def write(self, delta: str) -> None:
        self.arrived.append(time.monotonic())
        super().write(delta)


def test_streams_server_sent_events_piece_by_piece(server: FakeServer) -> None:
    stream = Stream(["Marie", " Curie", " was born", " in Warsaw [1]."], delay_s=0.1)
    server.answer = lambda path, body: (200, stream)
    sink = TimedText()

    result = complete(OpenAICompatChatModel(server.url, "m"), ask(), sink)

    body = server.requests[0][2]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert sink.pieces == stream.pieces and result.text == "Marie Curie was born in Warsaw [1]."
    assert (result.model, result.prompt_tokens, result.completion_tokens,
            result.finish_reason) == ("served-model", 11, 4, "stop")
    assert sink.arrived[0] < stream.sent_at[-1]  # the first piece came before the last went


def test_a_stream_cut_off_is_retried_and_the_sink_restarted(server: FakeServer) -> None:
    replies = iter([Stream(["Marie", " Curie"], complete=False), Stream(["Warsaw."])])
    server.answer = lambda path, body: (200, next(replies))
    sink = TextBuffer()
    model = RetryingChatModel(OpenAICompatChatModel(server.url, "m"), base_delay_s=0)

    assert complete(model, ask(), sink).text == "Warsaw."
    assert (sink.pieces, sink.restarts, sink.text) == (["Marie", " Curie", "Warsaw."], 1,
                                                      "Warsaw.")


def test_a_refused_stream_falls_back_to_guided_json_without_repeating_text(
        server: FakeServer) -> None:
    def old_vllm(path: str, body: dict[str, Any]) -> Reply:
        if "response_format" in body:
            return 400, {"object": "error", "message": "json_schema is not supported"}
        return 200, Stream(['{"triples"', ': ["a"]}'])

    server.answer = old_vllm
    sink = TextBuffer()
    result = complete(OpenAICompatChatModel(server.url, "m"), ask(json_schema=SCHEMA), sink)
    assert sink.pieces == ['{"triples"', ': ["a"]}'] and result.text == '{"triples": ["a"]}'
    assert "guided_json" in server.requests[1][2]
