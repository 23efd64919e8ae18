"""Persistent response cache: a re-run of the same prompts costs no model calls.

Entries live in one SQLite file (WAL mode), so several processes and threads can share
it; the key is the sha256 of everything that shapes the output (model name and identity,
messages, schema, max_tokens, temperature, seed, plus `key_extra` such as the backend's
defaults). The identity is what the backend reports of its weights (core.llm.identity),
so another GGUF under the same path or name, or other weights served under the same
name, never replay the old model's answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.errors import LLMCallError
from core.llm.base import (
    ChatModel,
    ChatModelLayer,
    Completion,
    CompletionRequest,
    TextSink,
    astream,
)
from core.llm.identity import model_identity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(model_name: str, request: CompletionRequest, extra: Mapping[str, Any],
              identity: str | None = None) -> str:
    """sha256 over a canonical JSON of the request; equal requests give equal keys.
    `identity`: the model's (None: a backend that reports none, keyed by name alone)."""
    payload: dict[str, Any] = {
        "model": model_name,
        "messages": list(request.messages),
        "json_schema": request.json_schema,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
        "extra": dict(extra),
    }
    if request.stop:  # absent when empty: keys of requests without stop strings stay as they were
        payload["stop"] = list(request.stop)
    # Only when set, so the keys of requests without them stay what they were.
    if request.stop_after_repeats:
        payload["stop_after_repeats"] = request.stop_after_repeats
    if request.line_marker:
        payload["line_marker"] = request.line_marker
    if request.grammar:
        payload["grammar"] = request.grammar
    if identity is not None:
        payload["identity"] = identity
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CompletionStore:
    """The SQLite table behind the cache; every method is thread-safe and blocking."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT model, text, prompt_tokens, completion_tokens, finish_reason "
                "FROM completions WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        model, text, prompt_tokens, completion_tokens, finish_reason = row
        return Completion(text, model, prompt_tokens, completion_tokens, finish_reason, True)

    def put(self, key: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    completion.model,
                    completion.text,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    completion.finish_reason,
                    time.time(),
                ),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM completions").fetchone()
        return int(n)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM completions")
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedChatModel(ChatModelLayer):
    """Answers a request seen before from the SQLite file at `path` (`cached=True`, no
    inner call); otherwise asks `inner` and stores the reply.

    Put it outside the retry layer, so only validated output is stored. `key_extra` is
    mixed into every key: pass what changes outputs without showing in the request (the
    backend kind, its default max_tokens / temperature), so changing it misses the cache.
    """

    def __init__(
        self, inner: ChatModel, path: Path, *, key_extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(inner)
        self.store = CompletionStore(path)
        self.key_extra = dict(key_extra or {})
        self._identity: tuple[str | None] | None = None  # asked once, when first needed

    def key(self, request: CompletionRequest, identity: str | None = None) -> str:
        return cache_key(self.model_name, request, self.key_extra, identity)

    async def model_identity(self) -> str | None:
        """The inner backend's identity (asked once); `LLMCallError` while it cannot tell."""
        if self._identity is None:
            self._identity = (await model_identity(self.inner),)
        return self._identity[0]

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self._answer(request, None)

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        """A hit is written to `sink` in one piece; a miss streams, and is stored whole
        once complete (and, below, validated by the retry layer)."""
        return await self._answer(request, sink)

    async def _answer(self, request: CompletionRequest, sink: TextSink | None) -> Completion:
        def inner() -> Awaitable[Completion]:
            return (self.inner.acomplete(request) if sink is None
                    else astream(self.inner, request, sink))

        if request.top_logprobs:  # the store keeps text only; log-probabilities would be lost
            return await inner()
        try:
            identity = await self.model_identity()
        except LLMCallError:
            # Which model answers is unknown (its server is down): neither replay nor store;
            # the call itself says what is wrong.
            return await inner()
        key = self.key(request, identity)
        # SQLite may wait on another process's write lock: keep the event loop free.
        hit = await asyncio.to_thread(self.store.get, key)
        if hit is not None:
            if sink is not None and hit.text:
                sink.write(hit.text)
            return hit
        result = await inner()
        await asyncio.to_thread(self.store.put, key, replace(result, cached=False))
        return result

    async def aclose(self) -> None:
        self.store.close()
        await super().aclose()
