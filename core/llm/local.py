"""In-process backend: llama-cpp-python on a GGUF file (the embedded default).

llama.cpp contexts are not thread-safe, so one model runs one request at a time, on its
own worker thread; the event loop stays free while it generates. The chat template comes
from the GGUF itself. A `json_schema` becomes a llama.cpp grammar, so the output is JSON
shaped by the schema (llama-cpp-python falls back to plain JSON for schema features its
converter lacks; the retry layer validates against the schema either way). Greedy calls
without a grammar decode by prompt lookup (`core.llm.lookup`) unless `lookup_decoding` is
off.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from core import timing
from core.errors import ConfigError, LLMCallError, ModelNotFoundError
from core.llm import lookup
from core.llm.base import Completion, CompletionRequest, LLMRequestError, TextSink


def _load_llama(path: Path, n_ctx: int, n_threads: int) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # an optional native build; say how to get it
        raise ConfigError(
            f"llama-cpp-python is not importable: {exc}",
            hint="install it (`pip install llama-cpp-python==0.3.36`, built from source) or "
            "use a server: KGRAG_LLM_BACKEND=openai",
        ) from exc
    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelNotFoundError(
            f"llama.cpp could not load {path}: {exc}",
            hint="the file may be incomplete: run `kgrag models install` again",
        ) from exc


def _perf_reset(llama: Any) -> None:
    try:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(llama._ctx.ctx)
    except (ImportError, AttributeError):  # an older binding without perf counters
        pass


def _perf(llama: Any) -> tuple[float, float]:
    """llama.cpp's own prompt-eval and decode seconds since the last reset (0 unknown)."""
    try:
        import llama_cpp

        data = llama_cpp.llama_perf_context(llama._ctx.ctx)
    except (ImportError, AttributeError):
        return 0.0, 0.0
    return round(data.t_p_eval_ms / 1000, 4), round(data.t_eval_ms / 1000, 4)


@functools.lru_cache(maxsize=8)
def _grammar(gbnf: str) -> Any:
    """A compiled llama.cpp grammar (compiled once per grammar text)."""
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_string(gbnf, verbose=False)
    except ValueError as exc:
        raise LLMRequestError(f"the request's grammar does not parse: {exc}",
                              hint="fix the GBNF grammar in the stage that sends it") from exc


class LlamaCppChatModel:
    """Chat completions from a local GGUF via llama-cpp-python.

        >>> model = LlamaCppChatModel(Path("qwen.gguf"), model_name="qwen2.5-coder-0.5b")
        >>> model.model_name
        'qwen2.5-coder-0.5b'

    The model loads on the first request (a few hundred MB, about a second), not here.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        model_name: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        max_tokens: int = 768,
        temperature: float = 0.0,
        lookup_decoding: bool = True,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.lookup_decoding = lookup_decoding
        self.last_lookup: lookup.LookupStats | None = None  # of the last call, for benches
        self._llama: Any = None
        self._load_seconds = 0.0  # of a load not yet reported to core.timing
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")

    async def acomplete(self, request: CompletionRequest) -> Completion:
        return await self._timed(request, None)

    async def astream(self, request: CompletionRequest, sink: TextSink) -> Completion:
        """The completion, each generated piece written to `sink` on the caller's loop as
        the worker thread decodes it."""
        return await self._timed(request, sink)

    async def _timed(self, request: CompletionRequest, sink: TextSink | None) -> Completion:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        if sink is None:
            result = await loop.run_in_executor(self._worker, self.complete_blocking, request)
        else:
            result = await self._relayed(request, sink)
        # Back in the caller's context: split the call's time for `kgrag ask --timings`.
        wall = time.perf_counter() - start
        loaded, self._load_seconds = self._load_seconds, 0.0
        timing.add("load llm", loaded)
        wall -= loaded
        timing.add("llm prompt eval", result.prompt_seconds)
        timing.add("llm decode", result.decode_seconds)
        timing.add("llm sampling + grammar + wait",
                   max(0.0, wall - result.prompt_seconds - result.decode_seconds))
        return result

    async def _relayed(self, request: CompletionRequest, sink: TextSink) -> Completion:
        """Generation on the worker thread; its pieces cross to this loop through a queue,
        so `sink` is written to on the caller's thread, in order, before the result."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        abandoned = threading.Event()

        def relay(piece: str) -> bool:
            if abandoned.is_set():
                return False
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, piece)
            except RuntimeError:  # the caller's loop is closed: nobody reads on
                return False
            return True

        job = loop.run_in_executor(self._worker, self.complete_blocking, request, relay)
        job.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece
        try:
            while (piece := await pieces.get()) is not None:
                sink.write(piece)
        except BaseException:
            abandoned.set()  # the sink failed or the call was cancelled: stop generating
            raise
        return await job

    def complete_blocking(self, request: CompletionRequest,
                          on_piece: Callable[[str], bool] | None = None) -> Completion:
        """The same completion, on the calling thread (blocks; serialised by a lock).
        `on_piece` gets each generated piece; generation stops when it returns False."""
        kwargs: dict[str, Any] = {
            "messages": [dict(m) for m in request.messages],
            "max_tokens": request.max_tokens or self.max_tokens,
            "temperature": (
                self.temperature if request.temperature is None else request.temperature
            ),
            "seed": request.seed,
        }
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.grammar:
            kwargs["grammar"] = _grammar(request.grammar)
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        with self._lock:
            llama = self._loaded()
            _perf_reset(llama)
            looked_up: lookup.LookupStats | None = None
            self.last_lookup = None
            try:
                if self._lookup_applies(llama, request, kwargs):
                    looked_up = self.last_lookup = lookup.LookupStats()
                    response = self._streamed(
                        llama, kwargs, request.stop_after_repeats, request.line_marker,
                        on_piece, self._lookup_stream(llama, kwargs, looked_up))
                    response["usage"] = {"prompt_tokens": looked_up.prompt_tokens,
                                         "completion_tokens": looked_up.completion_tokens}
                elif request.stop_after_repeats > 0 or request.line_marker or on_piece:
                    response = self._streamed(llama, kwargs, request.stop_after_repeats,
                                              request.line_marker, on_piece)
                else:
                    response = llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # llama-cpp-python's "exceed context window" and kin
                raise LLMRequestError(
                    f"{self.model_name} refused the request: {exc}",
                    hint="shorten the prompt (smaller chunks) or raise KGRAG_LLM_CONTEXT",
                ) from exc
            except RuntimeError as exc:
                raise LLMCallError(f"{self.model_name} failed: {exc}") from exc
            prompt_s, decode_s = _perf(llama) if looked_up is None else (
                round(looked_up.prompt_seconds, 4), round(looked_up.decode_seconds, 4))
            completion = replace(self._completion(response), prompt_seconds=prompt_s,
                                 decode_seconds=decode_s)
            if request.top_logprobs:
                tokens, top = self._top_logprobs(llama, completion.prompt_tokens,
                                                 request.top_logprobs)
                completion = replace(completion, tokens=tokens, top_logprobs=top)
        return completion

    def _lookup_applies(self, llama: Any, request: CompletionRequest,
                        kwargs: dict[str, Any]) -> bool:
        """Prompt-lookup decoding gives greedy decoding's tokens: only for greedy calls
        without a grammar (or a read-back of log-probabilities)."""
        return (self.lookup_decoding and kwargs["temperature"] == 0 and not request.grammar
                and request.json_schema is None and not request.top_logprobs
                and lookup.has_chat_template(llama))

    @staticmethod
    def _lookup_stream(llama: Any, kwargs: dict[str, Any], stats: lookup.LookupStats
                       ) -> Generator[dict[str, Any]]:
        """`lookup.generate` in the shape of llama-cpp-python's chat stream."""
        budget = int(kwargs["max_tokens"])
        for piece in lookup.generate(llama, kwargs["messages"], budget,
                                     kwargs.get("stop") or (), stats):
            yield {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
        finish = "length" if stats.completion_tokens >= budget else "stop"
        yield {"choices": [{"delta": {}, "finish_reason": finish}]}

    @staticmethod
    def _streamed(llama: Any, kwargs: dict[str, Any], repeats: int = 0,
                  marker: str = "", on_piece: Callable[[str], bool] | None = None,
                  stream: Generator[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The completion, streamed and cut off once `repeats` generated lines repeat an
        earlier line (a small model looping over the same fact), or at the first line
        without `marker` (prose instead of the asked format; a first line longer than 300
        characters counts as one), or when `on_piece` (given each piece) returns False;
        the same response shape as an unstreamed call, with usage counted from the
        stream. `stream`: the parts to read (default: llama-cpp-python's own stream)."""
        text, pieces, finish = "", 0, "stop"
        seen: set[str] = set()
        repeated = 0
        off_format = unread = False
        if stream is None:
            stream = llama.create_chat_completion(**kwargs, stream=True)
        try:
            for part in stream:
                choice = part["choices"][0]
                piece = choice["delta"].get("content") or ""
                if piece:
                    pieces += 1
                    done_lines = (text + piece).split("\n")[:-1]
                    for line in done_lines[text.count("\n"):]:
                        key = " ".join(line.split()).casefold()
                        if key and key in seen:
                            repeated += 1
                        off_format |= bool(marker and key and marker not in key)
                        seen.add(key)
                    text += piece
                    tail = text.rsplit("\n", 1)[-1]
                    off_format |= bool(marker and len(tail) > 300 and marker not in tail)
                    unread = on_piece is not None and not on_piece(piece)
                finish = choice.get("finish_reason") or finish
                if (repeats and repeated >= repeats) or off_format or unread:
                    finish = "stop"
                    break
        finally:
            stream.close()
        prompt = max(0, int(llama.n_tokens) - pieces)
        return {"choices": [{"message": {"content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": pieces}}

    @staticmethod
    def _top_logprobs(llama: Any, prompt_tokens: int, k: int
                      ) -> tuple[tuple[str, ...], tuple[dict[str, float], ...]]:
        """Top-k log-probabilities at each generated position, re-read from the model.

        llama-cpp-python returns log-probabilities only for models loaded with logits_all
        (a context x vocabulary array: gigabytes); instead the generated tokens, still in
        the context after the call, are evaluated once more one at a time from the end of
        the prompt (the prompt's KV cache is reused), reading the last logits each time.
        """
        import numpy as np

        ids = [int(t) for t in llama.input_ids[: llama.n_tokens]]
        generated = ids[prompt_tokens:]
        if prompt_tokens < 1 or not generated:
            return (), ()
        llama.n_tokens = prompt_tokens - 1
        feed = [ids[prompt_tokens - 1], *generated[:-1]]
        tokens: list[str] = []
        top: list[dict[str, float]] = []
        for fed, produced in zip(feed, generated, strict=True):
            llama.eval([fed])
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
            logp = logits - logits.max()
            logp = logp - np.log(np.exp(logp).sum())
            best = np.argsort(-logp)[:k]
            tokens.append(llama.detokenize([produced]).decode("utf-8", errors="replace"))
            top.append({llama.detokenize([int(t)]).decode("utf-8", errors="replace"):
                        float(logp[t]) for t in best})
        return tuple(tokens), tuple(top)

    async def amodel_identity(self) -> str:
        """The GGUF's size and header hash (core.llm.identity), for the response cache."""
        from core.llm.identity import gguf_identity

        try:
            return await asyncio.to_thread(gguf_identity, self.model_path)
        except OSError as exc:
            raise LLMCallError(f"cannot read {self.model_path}: {exc}") from exc

    def _loaded(self) -> Any:
        if self._llama is None:
            if not self.model_path.is_file():
                raise ModelNotFoundError(
                    f"model file {self.model_path} does not exist",
                    hint="run: kgrag models install (or make setup)",
                )
            start = time.perf_counter()
            self._llama = _load_llama(self.model_path, self.n_ctx, self.n_threads)
            self._load_seconds = time.perf_counter() - start
        return self._llama

    def _completion(self, response: dict[str, Any]) -> Completion:
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            model=self.model_name,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )

    async def aclose(self) -> None:
        """Free the loaded model (it loads again on the next request)."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self._unload)

    def _unload(self) -> None:
        with self._lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
