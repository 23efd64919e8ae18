"""BM25 over every chunk in the graph (bm25s: sparse-matrix Okapi BM25, English
stopwords removed), rebuilt when the graph's fingerprint changes.

    >>> bm25 = BM25Retriever(graph)                                        # doctest: +SKIP
    >>> bm25.search("Radium Institute director", 3).hits[0].chunk_id       # doctest: +SKIP
    'chk_...'
"""

from __future__ import annotations

import threading
import time
from typing import Any

from core.protocols import GraphStore
from retrieval.graph_snapshot import graph_fingerprint
from retrieval.passages import PassageHit, PassageSearch


class BM25Retriever:
    """Okapi BM25 (k1 1.5, b 0.75) over the graph's chunks."""

    name = "bm25"

    def __init__(self, graph: GraphStore, *, refresh_seconds: float = 2.0) -> None:
        self.graph = graph
        self.refresh_seconds = refresh_seconds
        self._index: tuple[str, list[str], Any] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def search(self, question: str, k: int) -> PassageSearch:
        import bm25s

        started = time.perf_counter()
        out = PassageSearch(self.name)
        ids, model = self.index()
        tokens = bm25s.tokenize([question], stopwords="en", return_ids=False,
                                show_progress=False)
        if ids and k > 0 and tokens and tokens[0]:
            docs, scores = model.retrieve(tokens, k=min(k, len(ids)), show_progress=False,
                                          n_threads=0)
            out.hits = [PassageHit(ids[int(d)], float(s))
                        for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        elif not tokens or not tokens[0]:
            out.note = "the question has no words BM25 can match"
        out.seconds = time.perf_counter() - started
        return out

    def index(self) -> tuple[list[str], Any]:
        """(chunk ids, bm25s model) for the graph as it is now."""
        import bm25s

        with self._lock:
            now = time.monotonic()
            if self._index is not None and now - self._checked < self.refresh_seconds:
                return self._index[1], self._index[2]
            fingerprint = graph_fingerprint(self.graph)
            self._checked = now
            if self._index is None or self._index[0] != fingerprint:
                texts = self.graph.chunk_texts()
                ids = sorted(texts)
                model = bm25s.BM25()
                if ids:
                    model.index(bm25s.tokenize([texts[i] for i in ids], stopwords="en",
                                               show_progress=False), show_progress=False)
                self._index = (fingerprint, ids, model)
            return self._index[1], self._index[2]
