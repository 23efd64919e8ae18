"""Passage retrieval without an LLM call: the records every retriever returns, the dense
retriever, and reciprocal rank fusion.

A retriever implements one method, `search(question, k) -> PassageSearch`; the search
carries, besides the ranked chunk ids, what a user needs to see why they came up: the
linked entities, the seeds, and a note when it fell back to another ranking.

    >>> dense = DenseRetriever(chunk_index, embedder)                       # doctest: +SKIP
    >>> [h.chunk_id for h in dense.search("Where was Marie Curie born?", 2).hits]
    ['chk_3f...', 'chk_9a...']                                              # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.protocols import Embedder, VectorIndex

#: Reciprocal rank fusion's constant (Cormack et al. 2009).
RRF_K = 60


@dataclass(frozen=True)
class PassageHit:
    chunk_id: str
    score: float


@dataclass(frozen=True)
class SeedEntity:
    """A graph entity the search started from, and why."""

    id: str
    name: str
    weight: float  # its share of the seed vector before normalising
    span: str  # the question text it was linked from ("" for a fact match)
    similarity: float
    passages: int  # how many passages mention it (hubs get less weight)
    via: str  # "name" | "vector" | "fact"


@dataclass
class PassageSearch:
    """Ranked passages and how they were found."""

    retriever: str
    hits: list[PassageHit] = field(default_factory=list)
    seeds: list[SeedEntity] = field(default_factory=list)
    passage_seeds: int = 0  # passages seeded by their dense score
    note: str = ""  # e.g. why it fell back to dense ranking
    seconds: float = 0.0
    entity_scores: dict[str, float] = field(default_factory=dict)  # PageRank, top entities

    def to_json(self, texts: dict[str, str] | None = None) -> dict[str, Any]:
        hits = [{"chunk_id": h.chunk_id, "score": round(h.score, 6),
                 **({"text": texts.get(h.chunk_id, "")} if texts is not None else {})}
                for h in self.hits]
        return {
            "retriever": self.retriever,
            "hits": hits,
            "seeds": [vars(s) | {"weight": round(s.weight, 6),
                                 "similarity": round(s.similarity, 4)} for s in self.seeds],
            "passage_seeds": self.passage_seeds,
            "note": self.note,
            "seconds": round(self.seconds, 4),
        }


class PassageRetriever(Protocol):
    """Ranks chunks for a question with no LLM call."""

    name: str

    def search(self, question: str, k: int) -> PassageSearch: ...


class DenseRetriever:
    """Cosine between the question and chunk embeddings (the FAISS chunk index)."""

    name = "dense"

    def __init__(self, chunk_index: VectorIndex, embedder: Embedder) -> None:
        self.chunk_index = chunk_index
        self.embedder = embedder

    def search(self, question: str, k: int) -> PassageSearch:
        started = time.perf_counter()
        out = PassageSearch(self.name)
        if len(self.chunk_index) and k > 0:
            hits = self.chunk_index.search(self.embedder.embed([question]), k)[0]
            out.hits = [PassageHit(h.id, float(h.score)) for h in hits]
        out.seconds = time.perf_counter() - started
        return out


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int,
                           constant: int = RRF_K) -> list[PassageHit]:
    """Fuse rankings: score = sum over rankings of 1 / (constant + rank)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking, start=1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (constant + rank)
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [PassageHit(cid, s) for cid, s in ordered[:k]]


class HybridRetriever:
    """Dense + BM25 by reciprocal rank fusion of each one's top `depth`."""

    name = "hybrid"

    def __init__(self, dense: PassageRetriever, lexical: PassageRetriever,
                 depth: int = 50) -> None:
        self.dense = dense
        self.lexical = lexical
        self.depth = depth

    def search(self, question: str, k: int) -> PassageSearch:
        started = time.perf_counter()
        depth = max(k, self.depth)
        a = self.dense.search(question, depth)
        b = self.lexical.search(question, depth)
        out = PassageSearch(self.name, note="; ".join(x for x in (a.note, b.note) if x))
        out.hits = reciprocal_rank_fusion([[h.chunk_id for h in a.hits],
                                           [h.chunk_id for h in b.hits]], k)
        out.seconds = time.perf_counter() - started
        return out
