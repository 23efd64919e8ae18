"""An in-memory sparse copy of the graph's entity and passage nodes, for PageRank.

Nodes: every entity, then every chunk (passage). Edges, undirected, weighted:
- entity - passage: `MENTIONED_IN`, weight = mention count;
- entity - entity: `SYNONYM`, weight = cosine x `synonym_weight`;
- entity - entity: `RELATES` facts where extraction ran, weight = judge score (or
  confidence) x `relation_weight`.
It is read with the store's paged edge queries, so it is the same on FalkorDB and Neo4j,
and cached on disk under the index dir, keyed by a fingerprint of the graph (node and
edge counts per label and type): an ingest or delete changes the fingerprint and the
next search rebuilds it. A long-running reader (UI, `kgrag search --questions`) checks
the fingerprint at most every `refresh_seconds`.

    >>> snap = SnapshotCache(graph, index_dir).get()                      # doctest: +SKIP
    >>> snap.n_entities, snap.n_passages                                   # doctest: +SKIP
    (5210, 3098)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from core.protocols import GraphStore

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1


@dataclass
class GraphSnapshot:
    """Entities are nodes 0..E-1, passages E..E+P-1; `adjacency` is symmetric."""

    entity_ids: list[str]
    entity_names: list[str]
    chunk_ids: list[str]
    adjacency: sp.csr_matrix
    #: passages mentioning each entity (node specificity: 1 / this, HippoRAG)
    entity_passages: np.ndarray
    fingerprint: str = ""

    def __post_init__(self) -> None:
        self.entity_row = {e: i for i, e in enumerate(self.entity_ids)}
        self.chunk_row = {c: i for i, c in enumerate(self.chunk_ids)}

    @property
    def n_entities(self) -> int:
        return len(self.entity_ids)

    @property
    def n_passages(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(cls, entity_names: dict[str, str], chunk_ids: Sequence[str],
              mentions: Sequence[tuple[str, str, float]],
              synonyms: Sequence[tuple[str, str, float]] = (),
              relations: Sequence[tuple[str, str, float]] = (), *,
              synonym_weight: float = 1.0, relation_weight: float = 1.0,
              fingerprint: str = "") -> GraphSnapshot:
        """From edge lists (source id, target id, weight); unknown ids are skipped."""
        entity_ids = sorted(entity_names)
        chunks = sorted(set(chunk_ids))
        e_row = {e: i for i, e in enumerate(entity_ids)}
        n_e = len(entity_ids)
        c_row = {c: n_e + i for i, c in enumerate(chunks)}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []

        def add(a: int, b: int, w: float) -> None:
            if a != b and w > 0:
                rows.extend((a, b))
                cols.extend((b, a))
                vals.extend((w, w))

        passages = np.zeros(n_e, dtype=np.float64)
        for e, c, w in mentions:
            if e in e_row and c in c_row:
                add(e_row[e], c_row[c], float(w))
                passages[e_row[e]] += 1
        for edges, scale in ((synonyms, synonym_weight), (relations, relation_weight)):
            for a, b, w in edges:
                if a in e_row and b in e_row:
                    add(e_row[a], e_row[b], float(w) * scale)
        n = n_e + len(chunks)
        adjacency = sp.csr_matrix((np.asarray(vals, dtype=np.float64),
                                   (np.asarray(rows, dtype=np.int64),
                                    np.asarray(cols, dtype=np.int64))), shape=(n, n))
        adjacency.sum_duplicates()
        return cls(entity_ids, [entity_names[e] for e in entity_ids], chunks, adjacency,
                   passages, fingerprint)

    # ------------------------------------------------------------------ disk

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "snapshot.tmp.npz"
        a = self.adjacency.tocoo()
        np.savez_compressed(tmp, row=a.row, col=a.col, data=a.data,
                            passages=self.entity_passages)
        meta = {"version": SNAPSHOT_VERSION, "fingerprint": self.fingerprint,
                "entity_ids": self.entity_ids, "entity_names": self.entity_names,
                "chunk_ids": self.chunk_ids}
        (directory / "snapshot.tmp.json").write_text(json.dumps(meta), encoding="utf-8")
        tmp.replace(directory / "snapshot.npz")
        (directory / "snapshot.tmp.json").replace(directory / "snapshot.json")

    @classmethod
    def load(cls, directory: Path) -> GraphSnapshot | None:
        try:
            meta = json.loads((directory / "snapshot.json").read_text(encoding="utf-8"))
            if meta.get("version") != SNAPSHOT_VERSION:
                return None
            arrays = np.load(directory / "snapshot.npz")
            n = len(meta["entity_ids"]) + len(meta["chunk_ids"])
            adjacency = sp.csr_matrix((arrays["data"], (arrays["row"], arrays["col"])),
                                      shape=(n, n))
            return cls(meta["entity_ids"], meta["entity_names"], meta["chunk_ids"],
                       adjacency, arrays["passages"], meta["fingerprint"])
        except (OSError, ValueError, KeyError) as exc:
            log.info("no usable graph snapshot on disk (%s); rebuilding", exc)
            return None


def graph_fingerprint(graph: GraphStore) -> str:
    """Node and edge counts per label and type: changes with every ingest and delete."""
    stats = graph.stats()
    return json.dumps([sorted(stats.nodes.items()), sorted(stats.relationships.items())])


class SnapshotCache:
    """The current `GraphSnapshot`: in memory, else from disk, else built from the store."""

    def __init__(self, graph: GraphStore, directory: Path | None, *,
                 synonym_weight: float = 1.0, relation_weight: float = 1.0,
                 refresh_seconds: float = 2.0) -> None:
        self.graph = graph
        self.directory = directory
        self.synonym_weight = synonym_weight
        self.relation_weight = relation_weight
        self.refresh_seconds = refresh_seconds
        self._snapshot: GraphSnapshot | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.build_seconds = 0.0

    @property
    def key(self) -> str:
        return f"syn={self.synonym_weight};rel={self.relation_weight}"

    def get(self) -> GraphSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._snapshot is not None and now - self._checked < self.refresh_seconds:
                return self._snapshot
            fingerprint = graph_fingerprint(self.graph) + self.key
            self._checked = now
            if self._snapshot is not None and self._snapshot.fingerprint == fingerprint:
                return self._snapshot
            if self.directory is not None:
                stored = GraphSnapshot.load(self.directory)
                if stored is not None and stored.fingerprint == fingerprint:
                    self._snapshot = stored
                    return stored
            started = time.perf_counter()
            snap = self.build(fingerprint)
            self.build_seconds = time.perf_counter() - started
            if self.directory is not None:
                try:
                    snap.save(self.directory)
                except OSError as exc:  # a read-only data dir still answers
                    log.warning("could not save the graph snapshot: %s", exc)
            self._snapshot = snap
            return snap

    def build(self, fingerprint: str) -> GraphSnapshot:
        g = self.graph
        relations = g.edges("relations") if self.relation_weight > 0 else []
        return GraphSnapshot.build(
            g.entity_names(), g.chunk_ids(), g.edges("mentions"),
            g.edges("synonyms") if self.synonym_weight > 0 else [], relations,
            synonym_weight=self.synonym_weight, relation_weight=self.relation_weight,
            fingerprint=fingerprint)
