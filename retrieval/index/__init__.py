"""Vector indexes: FAISS, exact while small and IVF past a size threshold, GPU when present.

>>> index = open_index(settings, "chunks", embedder.dimension, embedder.model_name)
>>> index.add(chunk_ids, embedder.embed(texts)); index.save()
"""

from __future__ import annotations

import re

from core.settings import Settings
from retrieval.index.faiss_index import DEFAULT_APPROX_THRESHOLD, FaissVectorIndex

__all__ = ["DEFAULT_APPROX_THRESHOLD", "FaissVectorIndex", "open_index"]


def open_index(
    settings: Settings,
    name: str,
    dimension: int,
    model_name: str,
    *,
    approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
) -> FaissVectorIndex:
    """The index `name` ("chunks", "entities", "propositions") under `settings.index_dir`.

    Loads it when it was saved before (checking it matches the embedder), else starts empty.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"index name must be a lowercase identifier, got {name!r}")
    return FaissVectorIndex.open(
        settings.index_dir / name,
        dimension,
        model_name,
        approx_threshold=approx_threshold,
        device=settings.faiss_device,
    )
