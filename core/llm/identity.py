"""Which model answers, for the response cache: the weights, not only the configured name.

A name says little: `llm_model_path` may point at another GGUF under the same
`llm_model`, and a vLLM server may serve other weights under the same served name. The
cache keys on what a backend reports through `amodel_identity()`:

- the local backend: the GGUF's size and a sha256 over its header and metadata (the first
  4 MiB) plus 1 MiB samples of the tensor data from its middle and its end (a fine-tune
  of the same base has the same header and size, but other weights);
- an OpenAI-compatible server: the model's entry in `GET /models` (vLLM reports the
  weights it loaded as `root`, and a LoRA adapter's base as `parent`).

    >>> gguf_identity(Path("qwen.gguf"))                      # doctest: +SKIP
    'gguf 491400032 bytes, sha256 5c0f...'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx

from core.errors import LLMCallError

HEADER_BYTES = 4 << 20
SAMPLE_BYTES = 1 << 20


def gguf_identity(path: Path) -> str:
    """Size and sha256 of a GGUF's header, metadata and two samples of its weights."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(HEADER_BYTES))
        for offset in (size // 2, max(size - SAMPLE_BYTES, 0)):
            fh.seek(offset)
            digest.update(fh.read(SAMPLE_BYTES))
    return f"gguf {size} bytes, sha256 {digest.hexdigest()}"


async def served_model_identity(client: httpx.AsyncClient, base_url: str, model: str) -> str:
    """The server's own description of `model` (`GET {base_url}/models`).

    Raises `LLMCallError` when the server cannot be asked; a server without that endpoint,
    or one that does not list the model, leaves the name as all that is known.
    """
    url = f"{base_url}/models"
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        raise LLMCallError(f"cannot ask {url} which model it serves: {exc}") from exc
    if response.status_code in (404, 405, 501):  # no such endpoint
        return f"{model} (the server lists no models)"
    if response.status_code >= 400:
        raise LLMCallError(f"{url} answered {response.status_code}")
    try:
        listed: Any = response.json().get("data") or []
    except (ValueError, AttributeError):
        return f"{model} (the server lists no models)"
    for entry in listed:
        if isinstance(entry, dict) and entry.get("id") == model:
            # `created` is the time of the request on vLLM: not part of the identity.
            fields = {k: entry.get(k) for k in ("id", "root", "parent", "owned_by")}
            return json.dumps(fields, sort_keys=True)
    return f"{model} (not listed by the server)"


async def model_identity(model: Any) -> str | None:
    """What the backend under `model`'s layers reports as its identity; None when it has
    no `amodel_identity` (test doubles: their name is their identity)."""
    backend = model
    while hasattr(backend, "inner"):
        backend = backend.inner
    report = getattr(backend, "amodel_identity", None)
    return None if report is None else str(await report())
