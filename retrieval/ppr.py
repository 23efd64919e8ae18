"""Personalized PageRank over entity and passage nodes (HippoRAG 2, LinearRAG): graph
retrieval with no LLM call at query time, on the mention layer alone or with facts.

    question -> its entity spans (spaCy NER + capitalised spans)
             -> linked graph entities (exact name, or entity-vector cosine >= threshold),
                each weighted by similarity / (passages mentioning it) ** hub_exponent
             -> + facts matched in the fact vector index (query-to-triple linking), when
                extraction has written facts: their subject and object entities
             -> + the top dense passages (or dense + BM25 by rank fusion), sharing
                passage_weight of the restart distribution in proportion to their scores
             -> PageRank with restarts to those seeds (damping 0.5) on the snapshot
             -> passages ranked by their PageRank score

A question that links no entity, or an empty graph, gets the dense ranking, with the
reason in `PassageSearch.note`.

    >>> ppr = PageRankRetriever(snapshots, chunk_index, entity_index, embedder)  # doctest: +SKIP
    >>> found = ppr.search("Which city is the head office of the Oberoi family's company?", 5)
    >>> [s.name for s in found.seeds]                                        # doctest: +SKIP
    ['Oberoi']
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from core.models import entity_id
from core.nlp import mention_name
from core.protocols import Embedder, Hit, TextAnalyser, VectorIndex
from retrieval.graph_snapshot import GraphSnapshot, SnapshotCache
from retrieval.linking import question_spans
from retrieval.passages import (
    PassageHit,
    PassageRetriever,
    PassageSearch,
    SeedEntity,
    reciprocal_rank_fusion,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageRankSettings:
    """The knobs (each is a setting); defaults chosen on the tune sample of
    bench/retrieval_bench.py (HippoRAG 2's were damping 0.5, passages 0.05)."""

    damping: float = 0.3
    passage_weight: float = 0.6  # the passages' share of the restart distribution
    dense_seeds: int = 20
    link_threshold: float = 0.8
    link_candidates: int = 1
    hub_exponent: float = 0.5
    ngram_names: bool = False  # also link word n-grams naming entities (hurt R@2 when tuned)
    fact_threshold: float = 0.6
    fact_candidates: int = 5
    iterations: int = 50
    tolerance: float = 1e-8


@dataclass
class PageRank:
    """One question's PageRank over the snapshot, kept for ToG to rank its candidates."""

    snapshot: GraphSnapshot
    scores: np.ndarray  # one per node: entities, then passages
    search: PassageSearch
    dense: dict[str, float] = field(default_factory=dict)  # chunk id -> dense score

    def entity_score(self, eid: str) -> float:
        row = self.snapshot.entity_row.get(eid)
        return float(self.scores[row]) if row is not None else 0.0

    def passage_score(self, cid: str) -> float:
        row = self.snapshot.chunk_row.get(cid)
        return float(self.scores[self.snapshot.n_entities + row]) if row is not None else 0.0


class PageRankRetriever:
    """Passages by Personalized PageRank seeded from the question (module docstring)."""

    name = "ppr"

    def __init__(self, snapshots: SnapshotCache, chunk_index: VectorIndex,
                 entity_index: VectorIndex | None, embedder: Embedder,
                 analyser: TextAnalyser | None = None, fact_index: VectorIndex | None = None,
                 settings: PageRankSettings | None = None,
                 lexical: PassageRetriever | None = None) -> None:
        self.snapshots = snapshots
        self.chunk_index = chunk_index
        self.entity_index = entity_index
        self.embedder = embedder
        self.analyser = analyser
        self.fact_index = fact_index
        self.s = settings or PageRankSettings()
        self.lexical = lexical  # given: passage seeds are dense + BM25 (RRF), not dense
        self._transition: tuple[str, sp.csr_matrix, np.ndarray] | None = None

    def search(self, question: str, k: int) -> PassageSearch:
        return self.rank(question, k).search

    def rank(self, question: str, k: int) -> PageRank:
        """The PageRank of `question` and its top-k passages."""
        started = time.perf_counter()
        snap = self.snapshots.get()
        out = PassageSearch(self.name)
        qvec = self.embedder.embed([question])
        depth = max(k, self.s.dense_seeds)
        dense_hits = (self.chunk_index.search(qvec, depth)[0]
                      if len(self.chunk_index) and depth > 0 else [])
        dense = {h.id: float(h.score) for h in dense_hits}
        if self.lexical is not None and dense_hits:
            # Passage seeds from dense + BM25 by reciprocal rank fusion (hybrid seeds).
            lexical = self.lexical.search(question, depth).hits
            fused = reciprocal_rank_fusion([[h.id for h in dense_hits],
                                            [h.chunk_id for h in lexical]], depth)
            dense_hits = [Hit(h.chunk_id, h.score) for h in fused]
        scores = np.zeros(snap.n_entities + snap.n_passages)
        ranking = "dense + BM25" if self.lexical is not None else "dense"
        if not snap.n_entities:
            out.note = f"the graph has no entities yet: {ranking} ranking"
        else:
            out.seeds = self.seed_entities(question, qvec, snap)
            if not out.seeds:
                out.note = f"no question entity linked to the graph: {ranking} ranking"
        if out.note:
            out.hits = [PassageHit(h.id, float(h.score)) for h in dense_hits[:k]]
            out.seconds = time.perf_counter() - started
            return PageRank(snap, scores, out, dense)
        seed = self.seed_vector(snap, out, dense_hits[: self.s.dense_seeds])
        scores = self.pagerank(snap, seed)
        passage_scores = scores[snap.n_entities:]
        order = np.argsort(-passage_scores, kind="stable")[:k]
        out.hits = [PassageHit(snap.chunk_ids[i], float(passage_scores[i])) for i in order
                    if passage_scores[i] > 0]
        if len(out.hits) < k:  # passages the walk never reached: fill in by dense score
            have = {h.chunk_id for h in out.hits}
            out.hits += [PassageHit(h.id, 0.0) for h in dense_hits if h.id not in have
                         ][: k - len(out.hits)]
        ent = scores[: snap.n_entities]
        for i in np.argsort(-ent, kind="stable")[:20]:
            if ent[i] > 0:
                out.entity_scores[snap.entity_names[i]] = round(float(ent[i]), 6)
        out.seconds = time.perf_counter() - started
        return PageRank(snap, scores, out, dense)

    # ------------------------------------------------------------------ seeds

    def seed_vector(self, snap: GraphSnapshot, out: PassageSearch,
                    dense_hits: Sequence[Hit]) -> np.ndarray:
        """The restart distribution: linked entities share `1 - passage_weight`, the top
        dense passages share `passage_weight`, each in proportion to its own weight."""
        entities = np.zeros(snap.n_entities + snap.n_passages)
        for e in out.seeds:
            entities[snap.entity_row[e.id]] += e.weight
        passages = np.zeros_like(entities)
        for h in dense_hits:
            row = snap.chunk_row.get(h.id)
            if row is not None and h.score > 0:
                passages[snap.n_entities + row] += float(h.score)
                out.passage_seeds += 1
        share = self.s.passage_weight if passages.sum() > 0 else 0.0
        seed = (1 - share) * entities / entities.sum()
        if share:
            seed += share * passages / passages.sum()
        return seed

    def question_spans(self, question: str) -> list[str]:
        """Entity spans of the question: spaCy's mentions, then capitalised spans."""
        spans: list[str] = []
        if self.analyser is not None:
            try:
                found = self.analyser.analyse([question])[0].mentions
                spans += [n for m in found if (n := mention_name(m))]
            except Exception as exc:  # NER is a help here, never a reason to fail
                log.warning("NER failed on the question: %s", exc)
        spans += question_spans(question, content_fallback=False)
        return list(dict.fromkeys(s for s in spans if s.strip()))

    def seed_entities(self, question: str, qvec: np.ndarray, snap: GraphSnapshot
                      ) -> list[SeedEntity]:
        best: dict[str, SeedEntity] = {}

        def offer(eid: str, span: str, sim: float, via: str) -> None:
            row = snap.entity_row.get(eid)
            if row is None:
                return
            passages = int(snap.entity_passages[row])
            weight = sim / max(passages, 1) ** self.s.hub_exponent
            if eid not in best or weight > best[eid].weight:
                best[eid] = SeedEntity(eid, snap.entity_names[row], weight, span, sim,
                                       passages, via)

        # A span names the entity of the same name; failing that, its nearest entity
        # names (embedding cosine >= link_threshold, at most link_candidates).
        spans = self.question_spans(question)
        unmatched = []
        for span in spans:
            if entity_id(span) in snap.entity_row:
                offer(entity_id(span), span, 1.0, "name")
            else:
                unmatched.append(span)
        if self.s.ngram_names:  # graph entity names written in the question, NER or not
            for span in name_ngrams(question):
                if entity_id(span) in snap.entity_row:
                    offer(entity_id(span), span, 1.0, "name")
        if unmatched and self.entity_index is not None and len(self.entity_index):
            hits = self.entity_index.search(self.embedder.embed(unmatched),
                                            self.s.link_candidates)
            for span, row in zip(unmatched, hits, strict=True):
                for h in row:
                    if h.score >= self.s.link_threshold:
                        offer(h.id, span, float(h.score), "vector")
        for eid, sim in self.fact_entities(qvec):
            offer(eid, "", sim, "fact")
        return sorted(best.values(), key=lambda e: (-e.weight, e.name))

    def fact_entities(self, qvec: np.ndarray) -> list[tuple[str, float]]:
        """Subject and object entities of the facts closest to the question (HippoRAG 2's
        query-to-triple linking). Fact ids are `fact:<subject id>:<object id>:<hash>`."""
        if self.fact_index is None or not len(self.fact_index):
            return []
        out = []
        for h in self.fact_index.search(qvec, self.s.fact_candidates)[0]:
            parts = h.id.split(":")
            if h.score >= self.s.fact_threshold and len(parts) == 4:
                out += [(parts[1], float(h.score)), (parts[2], float(h.score))]
        return out

    # ------------------------------------------------------------------ the walk

    def transition(self, snap: GraphSnapshot) -> tuple[sp.csr_matrix, np.ndarray]:
        """Column-stochastic transition matrix of the snapshot and its dangling nodes."""
        if self._transition is None or self._transition[0] != snap.fingerprint:
            a = snap.adjacency
            degree = np.asarray(a.sum(axis=0)).ravel()
            inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
            m = (a @ sp.diags(inv)).tocsr()
            self._transition = (snap.fingerprint, m, degree == 0)
        return self._transition[1], self._transition[2]

    def pagerank(self, snap: GraphSnapshot, seed: np.ndarray) -> np.ndarray:
        """r = (1 - d) s + d (M r + dangling mass x s), by power iteration."""
        m, dangling = self.transition(snap)
        d = self.s.damping
        r = seed.copy()
        for _ in range(self.s.iterations):
            nxt = (1 - d) * seed + d * (m @ r + float(r[dangling].sum()) * seed)
            if float(np.abs(nxt - r).sum()) < self.s.tolerance:
                return nxt
            r = nxt
        return r


_WORD = re.compile(r"[\w'\u2019.&-]+")


def name_ngrams(question: str, longest: int = 6) -> list[str]:
    """Word n-grams of the question that could be names: at least one word capitalised or
    a number (the small model of NER misses titles and lower-case questions)."""
    words = _WORD.findall(question)
    out = []
    for n in range(1, longest + 1):
        for i in range(len(words) - n + 1):
            gram = words[i:i + n]
            if any(w[:1].isupper() or w[:1].isdigit() for w in gram):
                out.append(" ".join(gram).strip(".'\u2019"))
    return out


def top_entities(rank: PageRank, ids: Sequence[str]) -> list[tuple[str, float]]:
    """`ids` with their PageRank scores, best first (ties by id only as a last resort)."""
    return sorted(((i, rank.entity_score(i)) for i in ids), key=lambda t: (-t[1], t[0]))
