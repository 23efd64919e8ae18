"""Build the chat model the settings describe: a backend wrapped in the layers.

    usage counters -> cache (if llm_cache) -> retries -> concurrency limit -> backend

Counting is outermost so cache hits count as calls; the cache sits outside the retries so
only validated output is stored; the limit is innermost so a request waiting out a
backoff holds no slot.
"""

from __future__ import annotations

import logging

import httpx

from core.errors import LLMCallError
from core.llm.base import ChatModel
from core.llm.cache import CachedChatModel
from core.llm.limit import ConcurrencyLimitedChatModel
from core.llm.retry import RetryingChatModel
from core.llm.usage import UsageCountingChatModel
from core.settings import Settings

_log = logging.getLogger(__name__)


def make_backend(settings: Settings) -> ChatModel:
    """The bare backend (no layers) for `settings.llm_backend`."""
    if settings.llm_backend == "openai":
        from core.llm.openai_compat import OpenAICompatChatModel

        return OpenAICompatChatModel(
            settings.llm_base_url,
            settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value() or None,
            timeout_s=settings.llm_timeout_s,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
        )
    from core.llm.local import LlamaCppChatModel
    from core.model_files import ensure_model

    return LlamaCppChatModel(
        ensure_model(settings, progress=_log.info),
        model_name=settings.llm_model,
        n_ctx=settings.llm_context,
        n_threads=settings.llm_threads,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        lookup_decoding=settings.llm_lookup_decoding,
    )


def require_llm_server(settings: Settings, timeout_s: float = 5.0) -> None:
    """The OpenAI-compatible server answers (any HTTP reply will do: some servers do not
    list models); raises `LLMCallError` with how to fix it. Commands call this before
    they start work, not after an hour of embedding."""
    url = settings.llm_base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"}
    try:
        httpx.get(url, headers=headers, timeout=timeout_s)
    except httpx.TransportError as exc:
        raise LLMCallError(
            f"the LLM server at {settings.llm_base_url} does not answer ({exc})",
            hint="start it (README 'Running at scale'), correct KGRAG_LLM_BASE_URL, or use "
            "the local model: KGRAG_LLM_BACKEND=local",
        ) from None


def make_chat_model(
    settings: Settings, backend: ChatModel | None = None
) -> UsageCountingChatModel:
    """The chat model for `settings`; `.usage` holds its counters.

    `backend` replaces the configured one (tests pass a `ScriptedChatModel`). Raises
    `ModelNotFoundError` at once when the local backend's GGUF is missing.
    """
    model = backend if backend is not None else make_backend(settings)
    # One llama.cpp context runs one request at a time; more in flight only queue.
    limit = settings.llm_concurrency if settings.llm_backend == "openai" else 1
    model = ConcurrencyLimitedChatModel(model, limit)
    model = RetryingChatModel(model, max_retries=settings.llm_max_retries)
    if settings.llm_cache:
        model = CachedChatModel(
            model,
            settings.cache_dir / "llm.sqlite",
            key_extra={
                "backend": settings.llm_backend,
                "max_tokens": settings.llm_max_tokens,
                "temperature": settings.llm_temperature,
            },
        )
    return UsageCountingChatModel(model)
