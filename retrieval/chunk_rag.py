"""Single-step retrieval: the question's nearest chunks in the chunk vector index.

Also the fallback of Think-on-Graph when no entity links or the search dead-ends.

    >>> retriever = ChunkRetriever(graph, chunk_index, embedder)     # doctest: +SKIP
    >>> [round(c.score, 2) for c in retriever.retrieve("Where was Marie Curie born?", k=2)]
    [0.71, 0.52]                                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.models import Chunk
from core.protocols import Embedder, GraphStore, VectorIndex


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk of evidence: its score and where it came from."""

    chunk: Chunk
    score: float
    source: str  # "vector" | "graph-path" | "graph-mention"


class ChunkRetriever:
    """Top-k chunks by cosine between the question and chunk embeddings."""

    def __init__(self, graph: GraphStore, chunk_index: VectorIndex, embedder: Embedder,
                 top_k: int = 4) -> None:
        self.graph = graph
        self.chunk_index = chunk_index
        self.embedder = embedder
        self.top_k = top_k

    def retrieve(self, question: str, k: int | None = None) -> list[ScoredChunk]:
        k = k or self.top_k
        if not len(self.chunk_index):
            return []
        hits = self.chunk_index.search(self.embedder.embed([question]), k)[0]
        chunks = {c.id: c for c in self.graph.get_chunks([h.id for h in hits])}
        return [ScoredChunk(chunks[h.id], float(h.score), "vector")
                for h in hits if h.id in chunks]

    def similarity(self, question: str, texts: Sequence[str]) -> list[float]:
        """Cosine of the question to each text (to rank chunks other stages found)."""
        if not texts:
            return []
        vecs = self.embedder.embed([question, *texts])
        return [float(x) for x in vecs[1:] @ vecs[0]]
