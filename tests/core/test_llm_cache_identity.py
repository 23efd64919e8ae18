"""The response cache knows which model answered: other weights under the same file path
or the same served name miss the cache instead of replaying the old model's answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.errors import LLMCallError
from core.llm.base import Completion, CompletionRequest, complete
from core.llm.cache import CachedChatModel
from core.llm.factory import make_chat_model
from core.llm.local import LlamaCppChatModel
from core.settings import load_settings

MiB = 1 << 20


def ask(text: str = "Who was Marie Curie?") -> CompletionRequest:
    return CompletionRequest.of([{"role": "user", "content": text}])


# --------------------------------------------------------------------------- local GGUF


class GgufAnsweringByItsTag(LlamaCppChatModel):
    """The real local backend (path, identity), answering with the tag written into its
    file instead of running llama.cpp: which file answered shows in the text."""

    def complete_blocking(self, request: CompletionRequest) -> Completion:
        data = self.model_path.read_bytes()
        tag = data[data.index(b"tag=") + 4:].split(b";")[0].decode()
        return Completion(text=f"answer of {tag}", model=self.model_name)


def write_gguf(path: Path, header_tag: str, weights_tag: str, size: int = 6 * MiB) -> None:
    """A file shaped like a GGUF: magic and metadata first, 'weights' after."""
    header = b"GGUF" + f"general.name=qwen;tag={header_tag};".encode()
    weights = f"weights={weights_tag};".encode() * (size // 16)
    path.write_bytes((header + weights)[:size])


def answer(path: Path, db: Path) -> Completion:
    model = GgufAnsweringByItsTag(path, model_name="qwen2.5-coder-0.5b")
    return complete(CachedChatModel(model, db), ask())


def test_another_gguf_at_the_same_path_misses_the_cache(tmp_path: Path) -> None:
    gguf, db = tmp_path / "model.gguf", tmp_path / "llm.sqlite"
    write_gguf(gguf, "A", "a")
    first = answer(gguf, db)
    assert (first.text, first.cached) == ("answer of A", False)
    assert answer(gguf, db).cached  # the same file: replayed

    write_gguf(gguf, "B", "b")  # same path, same name, same size
    assert answer(gguf, db).text == "answer of B"

    # A fine-tune of A: same header, same size, other weights.
    write_gguf(gguf, "A", "tuned")
    assert not answer(gguf, db).cached

    write_gguf(gguf, "A", "a")
    again = answer(gguf, db)
    assert (again.text, again.cached) == ("answer of A", True)


# --------------------------------------------------------------------------- served model


class VllmLike:
    """Serves `served` as vLLM does: /models lists it with the weights it loaded (`root`);
    a chat answer says which weights wrote it."""

    def __init__(self) -> None:
        self.root = "/models/qwen-a"
        self.chat_calls = 0
        self.url = ""


@pytest.fixture
def vllm() -> Iterator[VllmLike]:
    state = VllmLike()

    class Handler(BaseHTTPRequestHandler):
        def reply(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # vLLM's `created` is the time of the request
            self.reply({"object": "list", "data": [
                {"id": "served", "object": "model", "created": int(time.time() * 1000),
                 "owned_by": "vllm", "root": state.root, "parent": None}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            state.chat_calls += 1
            self.reply({"model": "served", "choices": [
                {"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": f"answer of {state.root}"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4}})

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def served_answer(base_url: str, data: Path) -> Completion:
    settings = load_settings(data_dir=data, llm_backend="openai", llm_base_url=base_url,
                             llm_model="served", llm_max_retries=0)
    return complete(make_chat_model(settings), ask())


def test_other_weights_served_under_the_same_name_miss_the_cache(
        vllm: VllmLike, tmp_path: Path) -> None:
    assert served_answer(vllm.url, tmp_path).text == "answer of /models/qwen-a"
    assert served_answer(vllm.url, tmp_path).cached  # `created` changed; the model did not
    assert vllm.chat_calls == 1

    vllm.root = "/models/qwen-b"  # the server restarted with other weights, same name
    assert served_answer(vllm.url, tmp_path).text == "answer of /models/qwen-b"
    assert vllm.chat_calls == 2


def test_a_server_that_cannot_say_which_model_it_serves_is_not_replayed(
        vllm: VllmLike, tmp_path: Path) -> None:
    assert served_answer(vllm.url, tmp_path).text == "answer of /models/qwen-a"
    down = "http://127.0.0.1:9/v1"  # nothing listens: whatever answered before is unknown
    with pytest.raises(LLMCallError, match="cannot reach the LLM server"):
        served_answer(down, tmp_path)
