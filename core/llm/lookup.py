"""Prompt-lookup decoding for the local model: greedy generation that guesses the next few
tokens by copying what followed the same n-gram earlier in the prompt or the reply, and
checks every guess in one batched forward pass (Saxena's prompt lookup decoding, the
"draft model" being the context itself).

Why: an extraction reply copies names and phrases out of its chunk, and on a CPU one forward
pass over a handful of tokens costs about what a pass over one costs (decoding reads every
weight once either way; bench/README.md, "Extraction speed per chunk"). Each accepted guess
is a token for free; a wrong guess costs a little batch width. The tokens are exactly those
of greedy decoding: a guess is kept only where it is the model's own argmax, and the first
mismatch is replaced by the model's choice. Only greedy decoding (temperature 0) without a
grammar takes this path; everything else goes through llama-cpp-python's sampler.

    >>> lookup_draft([5, 6, 7, 8, 5, 6], max_ngram=2, max_draft=3)
    [7, 8, 5]
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Longest n-gram looked up, and most tokens guessed per step (measured on 400-token
#: Wikipedia chunks: bench/extract_speed.py --paths lines,lines-lookup).
MAX_NGRAM = 3
MAX_DRAFT = 6


def lookup_draft(ids: Sequence[int], max_ngram: int = MAX_NGRAM, max_draft: int = MAX_DRAFT
                 ) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the longest suffix n-gram
    of `ids` (at most `max_ngram` long), up to `max_draft` of them; [] when none recurs."""
    arr = np.asarray(ids, dtype=np.int64)
    n = len(arr)
    for size in range(min(max_ngram, n - 1), 0, -1):
        suffix = arr[n - size:]
        windows = np.lib.stride_tricks.sliding_window_view(arr[:n - 1], size)
        hits = np.flatnonzero((windows == suffix).all(axis=1))
        if len(hits):
            start = int(hits[-1]) + size  # the most recent occurrence
            return [int(t) for t in arr[start:min(n, start + max_draft)]]
    return []


@dataclass
class LookupStats:
    """What one generation did: its prompt, forward passes, guessed and accepted tokens,
    and the seconds of prompt evaluation and of decoding (llama.cpp's own counters file a
    batch of guesses under prompt evaluation)."""

    prompt_tokens: int = 0
    prompt_evaluated: int = 0  # the prompt's tokens not already in the KV cache
    completion_tokens: int = 0
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0


def prompt_tokens(llama: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """The chat prompt as llama-cpp-python's GGUF chat template would tokenize it."""
    from llama_cpp import llama_chat_format

    model = llama._model
    eos, bos = model.token_eos(), model.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "")
    result = formatter(messages=list(messages))  # type: ignore[arg-type]
    return list(llama.tokenize(result.prompt.encode("utf-8"),
                               add_bos=not result.added_special, special=True))


def has_chat_template(llama: Any) -> bool:
    return "tokenizer.chat_template" in getattr(llama, "metadata", {})


def _argmax_rows(llama: Any, rows: Sequence[int]) -> list[int]:
    """The argmax token of the last batch's logits at each position in `rows` (-1: the
    last)."""
    n_vocab = llama.n_vocab()
    out = []
    for i in rows:
        logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(i), shape=(n_vocab,))
        out.append(int(np.argmax(logits)))
    return out


def _decode(llama: Any, tokens: Sequence[int], all_logits: bool) -> None:
    """Evaluate `tokens` after the cached context (logits for every one, or the last)."""
    n_past = llama.n_tokens
    llama._batch.set_batch(batch=list(tokens), n_past=n_past, logits_all=all_logits)
    llama._ctx.decode(llama._batch)
    llama.input_ids[n_past:n_past + len(tokens)] = tokens
    llama.n_tokens = n_past + len(tokens)


def _is_end(llama: Any, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llama._model.vocab, token)) or \
        token == llama.token_eos()


def _stop_at(text: str, stop: Sequence[str]) -> int:
    return min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)


def generate(llama: Any, messages: Sequence[dict[str, str]], max_tokens: int,
             stop: Sequence[str] = (), stats: LookupStats | None = None,
             max_ngram: int = MAX_NGRAM, max_draft: int = MAX_DRAFT) -> Iterator[str]:
    """The greedy reply to `messages`, one decoded piece per generated token (a piece is
    empty while a multi-byte character is incomplete); stops at an end-of-generation
    token, after `max_tokens`, or before a `stop` string. The prompt's prefix already in
    the KV cache is reused, as llama-cpp-python does."""
    stats = stats if stats is not None else LookupStats()
    prompt = prompt_tokens(llama, messages)
    stats.prompt_tokens = len(prompt)
    if len(prompt) + max_tokens > llama.n_ctx():
        raise ValueError(f"Requested tokens ({len(prompt) + max_tokens}) exceed context "
                         f"window of {llama.n_ctx()}")
    started = time.perf_counter()
    cached = [int(t) for t in llama.input_ids[:llama.n_tokens]]
    keep = 0
    while keep < min(len(cached), len(prompt) - 1) and cached[keep] == prompt[keep]:
        keep += 1
    llama._ctx.kv_cache_seq_rm(-1, keep, -1)
    llama.n_tokens = keep
    rest = prompt[keep:]
    stats.prompt_evaluated = len(rest)
    for start in range(0, len(rest), llama.n_batch):
        _decode(llama, rest[start:start + llama.n_batch], all_logits=False)
    bonus = _argmax_rows(llama, [-1])[0]
    stats.prompt_seconds = time.perf_counter() - started
    history = list(prompt)
    text = ""
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def take(token: int) -> tuple[str, bool]:
        """The piece `token` adds and whether the reply ends with it."""
        nonlocal text
        if _is_end(llama, token):
            return "", True
        piece = utf8.decode(llama.detokenize([token], special=False))
        history.append(token)
        stats.completion_tokens += 1
        text += piece
        cut = _stop_at(text, stop)
        if cut >= 0:
            return piece[:max(0, cut - (len(text) - len(piece)))], True
        return piece, stats.completion_tokens >= max_tokens

    accepted: list[int] = []
    while True:
        for token in (*accepted, bonus):
            piece, done = take(token)
            yield piece
            if done:
                return
        t0 = time.perf_counter()
        draft = lookup_draft(history, max_ngram, max_draft)
        draft = draft[:max_tokens - stats.completion_tokens - 1]
        n_past = llama.n_tokens
        _decode(llama, [bonus, *draft], all_logits=True)
        preds = _argmax_rows(llama, range(1 + len(draft)))
        n_ok = 0
        while n_ok < len(draft) and preds[n_ok] == draft[n_ok]:
            n_ok += 1
        # Keep the KV entries of `bonus` and the accepted guesses; drop the rest.
        llama.n_tokens = n_past + 1 + n_ok
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
        stats.steps += 1
        stats.drafted += len(draft)
        stats.accepted += n_ok
        stats.decode_seconds += time.perf_counter() - t0
        accepted, bonus = draft[:n_ok], preds[n_ok]
