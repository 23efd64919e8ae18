"""Single-step retrieval: the question's top chunks by the configured passage retriever
(`retrieval.passages`: dense, BM25, hybrid or PageRank), the dense chunk index when none
is given. Also the fallback of Think-on-Graph when no entity links or the search
dead-ends.

    >>> retriever = ChunkRetriever(graph, chunk_index, embedder)     # doctest: +SKIP
    >>> [round(c.score, 2) for c in retriever.retrieve("Where was Marie Curie born?", k=2)]
    [0.71, 0.52]                                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.models import Chunk
from core.protocols import Embedder, GraphStore, VectorIndex
from retrieval.passages import DenseRetriever, PassageHit, PassageRetriever


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk of evidence: its score and where it came from."""

    chunk: Chunk
    score: float
    #: "vector" (dense), "bm25", "hybrid", "ppr", "graph-path", "graph-entity",
    #: "graph-mention"
    source: str


class ChunkRetriever:
    """Top-k chunks by the passage retriever (default: cosine to the chunk embeddings)."""

    def __init__(self, graph: GraphStore, chunk_index: VectorIndex, embedder: Embedder,
                 top_k: int = 4, retriever: PassageRetriever | None = None) -> None:
        self.graph = graph
        self.chunk_index = chunk_index
        self.embedder = embedder
        self.top_k = top_k
        self.retriever = retriever or DenseRetriever(chunk_index, embedder)

    def retrieve(self, question: str, k: int | None = None) -> list[ScoredChunk]:
        k = k or self.top_k
        return self.chunks(self.retriever.search(question, k).hits[:k])

    def chunks(self, hits: list[PassageHit]) -> list[ScoredChunk]:
        """The chunks of ranked hits, in order (ids the graph lacks are left out)."""
        source = "vector" if self.retriever.name == "dense" else self.retriever.name
        chunks = {c.id: c for c in self.graph.get_chunks([h.chunk_id for h in hits])}
        return [ScoredChunk(chunks[h.chunk_id], float(h.score), source)
                for h in hits if h.chunk_id in chunks]

    def similarity(self, question: str, texts: Sequence[str]) -> list[float]:
        """Cosine of the question to each text (to rank chunks other stages found)."""
        if not texts:
            return []
        vecs = self.embedder.embed([question, *texts])
        return [float(x) for x in vecs[1:] @ vecs[0]]
