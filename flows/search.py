"""Passage search without an LLM call: the Python API behind `kgrag search`.

    >>> from flows.search import search_passages
    >>> found = search_passages("Which institute did Curie's daughter direct?")  # doctest: +SKIP
    >>> found["hits"][0]["text"][:40]                                           # doctest: +SKIP
    'Irène Joliot-Curie ... directed the Radium'
"""

from __future__ import annotations

from typing import Any, get_args

from core.errors import KgragError
from core.settings import RetrieverName
from flows.components import Components

RETRIEVERS: tuple[str, ...] = get_args(RetrieverName)


def search_passages(question: str, retriever: str | None = None, k: int = 5,
                    components: Components | None = None) -> dict[str, Any]:
    """The top-k passages for `question` as a JSON-ready dict: each hit with its score,
    text, document and position; the seeds and linked entities; a note when the
    retriever fell back to dense ranking."""
    question = " ".join(question.split())
    if not question:
        raise KgragError("the question is empty", hint='kgrag search "..."')
    if retriever is not None and retriever not in RETRIEVERS:
        raise KgragError(f"unknown retriever {retriever!r}",
                         hint=f"use one of {', '.join(RETRIEVERS)}")
    if k <= 0:
        raise KgragError(f"--k must be positive, got {k}", hint="e.g. --k 5")
    c = components or Components()
    found = c.retriever(retriever).search(question, k)
    chunks = {ch.id: ch for ch in c.graph.get_chunks([h.chunk_id for h in found.hits])}
    data = found.to_json()
    for hit in data["hits"]:
        ch = chunks.get(hit["chunk_id"])
        hit.update({"doc_id": ch.doc_id if ch else "", "position": ch.position if ch else -1,
                    "text": ch.text if ch else ""})
    data["question"] = question
    data["k"] = k
    if found.entity_scores:
        data["top_entities"] = found.entity_scores
    return data
