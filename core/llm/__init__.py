"""The LLM client: one `ChatModel` protocol, two backends, composable layers.

    from core.llm import CompletionRequest, make_chat_model
    model = make_chat_model(settings)               # backend + retry + cache + counters
    reply = await model.acomplete(CompletionRequest.of(messages, json_schema=schema))
    model.usage                                     # calls, cache hits, tokens, seconds
    complete(model, request, stream=TextBuffer())   # the text written as it is generated

Backends: `local.LlamaCppChatModel` (in-process GGUF), `openai_compat.OpenAICompatChatModel`
(vLLM and other OpenAI-compatible servers). Layers: `CachedChatModel`,
`RetryingChatModel`, `UsageCountingChatModel`, `ConcurrencyLimitedChatModel`; each streams
(`astream` to a `TextSink`) where the model under it does. Tests use
`testing.ScriptedChatModel` and `testing.ScriptedStreamingChatModel`.
"""

from core.llm.base import (
    ChatModel,
    ChatModelLayer,
    Completion,
    CompletionRequest,
    LLMRequestError,
    Message,
    TextBuffer,
    TextSink,
    Usage,
    aclose_model,
    acomplete_many,
    astream,
    complete,
)
from core.llm.cache import CachedChatModel
from core.llm.factory import make_backend, make_chat_model
from core.llm.limit import ConcurrencyLimitedChatModel
from core.llm.retry import RetryingChatModel
from core.llm.usage import UsageCountingChatModel

__all__ = [
    "CachedChatModel",
    "ChatModel",
    "ChatModelLayer",
    "Completion",
    "CompletionRequest",
    "ConcurrencyLimitedChatModel",
    "LLMRequestError",
    "Message",
    "RetryingChatModel",
    "TextBuffer",
    "TextSink",
    "Usage",
    "UsageCountingChatModel",
    "aclose_model",
    "acomplete_many",
    "astream",
    "complete",
    "make_backend",
    "make_chat_model",
]
