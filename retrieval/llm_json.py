"""One schema-constrained LLM call returning parsed JSON (the shape every QA stage uses)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.errors import LLMOutputError
from core.llm.base import ChatModel, CompletionRequest, Message, complete


def call_json(
    llm: ChatModel,
    system: str,
    user: str,
    schema: dict[str, Any],
    *,
    max_tokens: int = 128,
    examples: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Ask `llm` (greedy) for JSON matching `schema`; returns the parsed object.

    `examples` are (user, assistant) turns shown before the question. Raises
    `LLMOutputError` when the reply is not a JSON object (the retry layer of the configured
    model has already re-sampled invalid output by then) and `LLMCallError` when the call
    fails.
    """
    messages: list[Message] = [{"role": "system", "content": system}]
    for ex_user, ex_assistant in examples:
        messages += [{"role": "user", "content": ex_user},
                     {"role": "assistant", "content": ex_assistant}]
    messages.append({"role": "user", "content": user})
    request = CompletionRequest.of(messages, json_schema=schema, max_tokens=max_tokens,
                                   temperature=0.0)
    text = complete(llm, request).text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LLMOutputError(f"{llm.model_name} returned invalid JSON: {exc}: {text[:200]!r}",
                             hint="check the model; a larger model follows schemas better"
                             ) from None
    if not isinstance(data, dict):
        raise LLMOutputError(f"{llm.model_name} returned {type(data).__name__}, not an object")
    return data
