"""Think-on-Graph: beam search over the knowledge graph, guided by the question.

Per depth, as in ToG (PAPERS.md A1), ranked by the question's Personalized PageRank when
one is given (`retrieval.ppr`; HippoRAG 2 / ToG-2):
1. relation exploration: the predicates around each frontier entity (Cypher);
2. relation pruning: the top-W relations per frontier entity, scored against the question;
3. entity exploration: the neighbours along each kept relation, every one scored (PageRank
   of the neighbour + similarity of the fact to the question - a hub penalty), the best 5
   per relation kept; never the first 5 the store returns. With a PageRank, also ToG-2's
   entity -> passage -> entity hops: the entities named in the frontier entity's best
   passages, so a graph with no LLM facts yet (the mention layer alone) is still walked;
4. entity pruning: the top-W extended paths over all candidates, by the same blend;
5. the passages of the kept entities are read (at every depth, not only at the end), and
   the sufficiency check sees paths and passages: answerable? yes -> stop.
Every depth is recorded as a `SearchStep` for the UI.

    >>> reasoner = ThinkOnGraphReasoner(graph, EmbeddingScorer(embedder))  # doctest: +SKIP
    >>> found = reasoner.search("Who did Marie Curie marry?", linker.link(q))
    >>> found.paths[0].text()                                              # doctest: +SKIP
    'Marie Curie married Pierre Curie'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.answer import EntityRef, PathChoice, ReasoningPath, RelationChoice, SearchStep, Triple
from core.errors import LLMCallError, LLMOutputError
from core.llm.base import ChatModel
from core.models import Entity
from core.protocols import GraphStore
from retrieval import prompts
from retrieval.chunk_rag import ScoredChunk
from retrieval.lexical import coverage
from retrieval.linking import LinkedEntity
from retrieval.llm_json import call_json
from retrieval.ppr import PageRank
from retrieval.pruning import Scorer

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- stop checks


class SufficiencyCheck(Protocol):
    """Decides whether the paths found so far answer the question."""

    name: str

    def check(self, question: str, paths: Sequence[ReasoningPath],
              passages: Sequence[str] = ()) -> bool: ...


SUFFICIENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sufficient": {"type": "boolean"}},
    "required": ["sufficient"],
}


class LLMSufficiency:
    """ToG's `reasoning()` step: one schema-constrained yes/no call. A failed call says no
    (search deeper), which costs depth, never a wrong stop."""

    name = "llm"

    def __init__(self, llm: ChatModel) -> None:
        self.llm = llm

    def check(self, question: str, paths: Sequence[ReasoningPath],
              passages: Sequence[str] = ()) -> bool:
        lines = [f"- {t.text()}" for t in unique_triples(paths) if not is_passage_hop(t)]
        lines += [f"- {' '.join(p.split())[:400]}" for p in passages[:4]]
        facts = "\n".join(lines) or "(none)"
        try:
            data = call_json(self.llm, prompts.SUFFICIENCY_SYSTEM,
                             prompts.SUFFICIENCY_USER.format(question=question, facts=facts),
                             SUFFICIENT_SCHEMA, max_tokens=16)
        except (LLMOutputError, LLMCallError) as exc:
            log.warning("sufficiency check failed (%s); searching deeper", exc)
            return False
        return data.get("sufficient") is True


class HeuristicSufficiency:
    """No LLM call: sufficient when the paths mention most of the question's content words
    (everything the question names has been reached)."""

    name = "heuristic"

    def __init__(self, min_coverage: float = 0.6) -> None:
        self.min_coverage = min_coverage

    def check(self, question: str, paths: Sequence[ReasoningPath],
              passages: Sequence[str] = ()) -> bool:
        facts = " ".join(t.text() for t in unique_triples(paths) if not is_passage_hop(t))
        text = " ".join([facts, *passages]).strip()
        return bool(text) and coverage(question, text) >= self.min_coverage


#: The predicate of an entity -> passage -> entity hop (ToG-2): not a fact, a shared passage.
PASSAGE_HOP = "is mentioned with"


def is_passage_hop(t: Triple) -> bool:
    return t.predicate == PASSAGE_HOP


def unique_triples(paths: Sequence[ReasoningPath]) -> list[Triple]:
    seen: dict[str, Triple] = {}
    for p in paths:
        for t in p.triples:
            seen.setdefault(t.id, t)
    return list(seen.values())


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Beam:
    """A path being grown: the entity at its end, its triples, its score."""

    tail: Entity
    triples: tuple[Triple, ...]
    score: float

    def entity_ids(self) -> set[str]:
        ids = {self.tail.id}
        for t in self.triples:
            ids |= {t.subject_id, t.object_id}
        return ids

    def path(self) -> ReasoningPath:
        return ReasoningPath(triples=list(self.triples), score=round(self.score, 4))


@dataclass
class GraphSearch:
    """What the search found: paths, their source chunks, the trace, and how it ended."""

    paths: list[ReasoningPath] = field(default_factory=list)
    chunks: list[ScoredChunk] = field(default_factory=list)
    steps: list[SearchStep] = field(default_factory=list)
    sufficient: bool = False
    dead_end: bool = False
    stop_reason: str = ""


def _ref(e: Entity, score: float | None = None) -> EntityRef:
    return EntityRef(id=e.id, name=e.name, score=None if score is None else round(score, 4))


class ThinkOnGraphReasoner:
    """Beam search on a `GraphStore` (width W, depth D, `entities_per_relation` per relation).

    `relation_scorer` / `path_scorer` prune (embedding, BM25 or LLM); `sufficiency` is the
    stop check (None: search to depth D). `search(..., rank=...)` adds the question's
    PageRank: candidates are then ranked by it too, hubs pay a penalty, and passage hops
    join the relations.
    """

    #: Blend of a candidate's score: similarity to the question and PageRank (normalised
    #: to the best candidate), minus `hub_penalty` x log-share of passages mentioning it.
    similarity_weight = 0.5
    hub_penalty = 0.15

    def __init__(
        self,
        graph: GraphStore,
        relation_scorer: Scorer,
        path_scorer: Scorer | None = None,
        sufficiency: SufficiencyCheck | None = None,
        *,
        width: int = 3,
        depth: int = 3,
        entities_per_relation: int = 5,
        chunks: int = 4,
        hop_passages: int = 2,
    ) -> None:
        self.graph = graph
        self.relation_scorer = relation_scorer
        self.path_scorer = path_scorer or relation_scorer
        self.sufficiency = sufficiency
        self.width = width
        self.depth = depth
        self.entities_per_relation = entities_per_relation
        self.chunks = chunks
        self.hop_passages = hop_passages

    def search(self, question: str, topics: Sequence[LinkedEntity], *,
               width: int | None = None, depth: int | None = None,
               rank: PageRank | None = None) -> GraphSearch:
        """Search from the topic entities; `width` / `depth` override the defaults (the
        rectify loop widens a search that found nothing relevant); `rank` is the
        question's PageRank (retrieval.ppr), which orders candidates and adds passage
        hops."""
        width = width or self.width
        depth = depth or self.depth
        out = GraphSearch()
        beams = [Beam(t.entity, (), t.score) for t in topics[:width]]
        if not beams:
            out.stop_reason = "no topic entity"
            return out
        read: dict[str, ScoredChunk] = {}  # passages read so far, in reading order
        for d in range(1, depth + 1):
            step = SearchStep(depth=d, frontier=[_ref(b.tail, b.score) for b in beams])
            out.steps.append(step)
            candidates = self.expand(question, beams, width, step, rank)
            if not candidates:
                out.dead_end = True
                out.stop_reason = f"dead end at depth {d}"
                step.note = "no unexplored neighbours along the kept relations"
                break
            beams = self.prune(question, candidates, width, step, rank)
            step.kept = [_ref(b.tail, b.score) for b in beams]
            if rank is not None:
                self.read_passages(beams, rank, read)
            if self.sufficiency is not None:
                texts = [c.chunk.text for c in read.values()]
                step.sufficient = self.sufficiency.check(
                    question, [b.path() for b in beams], texts)
                if step.sufficient:
                    out.sufficient = True
                    out.stop_reason = f"sufficient at depth {d}"
                    break
        else:
            out.stop_reason = f"depth limit {depth}"
        out.paths = [b.path() for b in beams if b.triples]
        found = self.source_chunks(out.paths, [t.entity.id for t in topics[:width]])
        out.chunks = list({c.chunk.id: c for c in [*found, *read.values()]}.values())
        return out

    # ------------------------------------------------------------------ one depth

    def expand(self, question: str, beams: Sequence[Beam], width: int,
               step: SearchStep, rank: PageRank | None = None) -> list[Beam]:
        """Relation exploration + pruning, then entity exploration: the candidate paths."""
        options: list[tuple[Beam, str, bool, int]] = []
        seen_tails: set[str] = set()
        frontier: list[Beam] = []
        for beam in beams:
            if beam.tail.id in seen_tails:  # two paths reaching one entity explore it once
                continue
            seen_tails.add(beam.tail.id)
            frontier.append(beam)
            for predicate, outgoing, count in self.graph.relation_candidates(beam.tail.id):
                options.append((beam, predicate, outgoing, count))
        texts = [relation_text(b.tail.name, p, o) for b, p, o, _ in options]
        scores = self.relation_scorer.score(question, texts)
        by_entity: dict[str, list[int]] = {}
        for i, (b, _, _, _) in enumerate(options):
            by_entity.setdefault(b.tail.id, []).append(i)
        keep_idx: set[int] = set()
        for idx in by_entity.values():
            best = sorted(idx, key=lambda i: (-scores[i], -options[i][3], texts[i]))[:width]
            keep_idx.update(best)
        kept: list[tuple[Beam, str, bool]] = []
        for i, (b, p, o, _) in enumerate(options):
            step.relations.append(RelationChoice(entity=b.tail.name, predicate=p, outgoing=o,
                                                 score=round(scores[i], 4),
                                                 kept=i in keep_idx))
            if i in keep_idx:
                kept.append((b, p, o))
        candidates: list[Beam] = []
        for beam, predicate, outgoing in kept:
            found = self.fact_neighbours(beam, predicate, outgoing)
            candidates += self.best_neighbours(question, found, rank)
        if rank is not None:
            for beam in frontier:
                hops = self.passage_hops(beam, rank)
                if hops:
                    step.relations.append(RelationChoice(
                        entity=beam.tail.name, predicate=PASSAGE_HOP, outgoing=True,
                        score=round(max(rank.passage_score(t.triples[-1].chunk_id)
                                        for t in hops), 6), kept=True))
                candidates += self.best_neighbours(question, hops, rank)
        return candidates

    def fact_neighbours(self, beam: Beam, predicate: str, outgoing: bool) -> list[Beam]:
        """Every neighbour along one relation (up to 50), as candidate paths."""
        on_path = beam.entity_ids()
        out: list[Beam] = []
        for n in self.graph.neighbours(beam.tail.id, predicate, limit=50):
            if n.outgoing != outgoing or n.entity.id in on_path:
                continue
            subj, obj = (beam.tail, n.entity) if outgoing else (n.entity, beam.tail)
            triple = Triple(subject=subj.name, predicate=predicate, object=obj.name,
                            subject_id=subj.id, object_id=obj.id, chunk_id=n.chunk_id)
            out.append(Beam(n.entity, (*beam.triples, triple), beam.score))
        return out

    def passage_hops(self, beam: Beam, rank: PageRank) -> list[Beam]:
        """ToG-2's entity -> passage -> entity hops: the entities named in the frontier
        entity's `hop_passages` best passages (by PageRank), as candidate paths."""
        snap = rank.snapshot
        row = snap.entity_row.get(beam.tail.id)
        if row is None:
            return []
        n_e = snap.n_entities
        adj = snap.adjacency
        cols = adj.indices[adj.indptr[row]:adj.indptr[row + 1]]
        passages = sorted((int(c) for c in cols if c >= n_e),
                          key=lambda c: (-rank.scores[c], c))[: self.hop_passages]
        on_path = beam.entity_ids()
        out: list[Beam] = []
        for p in passages:
            chunk_id = snap.chunk_ids[p - n_e]
            ents = adj.indices[adj.indptr[p]:adj.indptr[p + 1]]
            for e in ents:
                eid = snap.entity_ids[int(e)]
                if int(e) >= n_e or eid in on_path:
                    continue
                other = Entity(id=eid, name=snap.entity_names[int(e)])
                triple = Triple(subject=beam.tail.name, predicate=PASSAGE_HOP,
                                object=other.name, subject_id=beam.tail.id, object_id=eid,
                                chunk_id=chunk_id)
                out.append(Beam(other, (*beam.triples, triple), beam.score))
        return out

    def best_neighbours(self, question: str, found: Sequence[Beam],
                        rank: PageRank | None) -> list[Beam]:
        """The `entities_per_relation` best of one relation's neighbours (the blended
        score of `candidate_scores`), never the first the store returned."""
        if len(found) <= self.entities_per_relation:
            return list(found)
        scores = self.candidate_scores(question, found, rank)
        order = sorted(range(len(found)), key=lambda i: (-scores[i], found[i].tail.name))
        return [found[i] for i in order[: self.entities_per_relation]]

    def candidate_scores(self, question: str, candidates: Sequence[Beam],
                         rank: PageRank | None) -> list[float]:
        """Similarity of each path's last step to the question, blended with the tail's
        PageRank (normalised to the best candidate) minus a hub penalty."""
        texts = [step_text(c.triples[-1]) for c in candidates]
        sims = self.path_scorer.score(question, texts)
        if rank is None:
            return sims
        prior = [rank.entity_score(c.tail.id) for c in candidates]
        top = max(prior) or 1.0
        snap = rank.snapshot
        most = float(snap.entity_passages.max()) if snap.n_entities else 1.0
        out = []
        for c, sim, p in zip(candidates, sims, prior, strict=True):
            row = snap.entity_row.get(c.tail.id)
            passages = float(snap.entity_passages[row]) if row is not None else 0.0
            hub = math.log1p(passages) / math.log1p(max(most, 1.0))
            out.append(self.similarity_weight * sim + (1 - self.similarity_weight) * p / top
                       - self.hub_penalty * hub)
        return out

    def prune(self, question: str, candidates: Sequence[Beam], width: int,
              step: SearchStep, rank: PageRank | None = None) -> list[Beam]:
        """Entity pruning: score every candidate path, keep the best `width`."""
        texts = ["; ".join(t.text() for t in c.triples) for c in candidates]
        if rank is None:
            scores = self.path_scorer.score(question, texts)
        else:
            scores = self.candidate_scores(question, candidates, rank)
        order: list[int] = []
        tails: set[str] = set()
        for i in sorted(range(len(candidates)), key=lambda i: (-scores[i], texts[i])):
            if len(order) == width:
                break
            if candidates[i].tail.id not in tails:  # one path per entity: a wider beam
                order.append(i)
                tails.add(candidates[i].tail.id)
        for i, c in enumerate(candidates):
            step.candidates.append(PathChoice(text=texts[i], entity=c.tail.name,
                                              score=round(scores[i], 4), kept=i in order))
        return [Beam(candidates[i].tail, candidates[i].triples, scores[i]) for i in order]

    # ------------------------------------------------------------------ text

    def read_passages(self, beams: Sequence[Beam], rank: PageRank,
                      read: dict[str, ScoredChunk]) -> None:
        """ToG-2: after each depth, the passage each kept path's last step came from and
        the kept entity's best passage (by PageRank) join the context."""
        snap = rank.snapshot
        wanted: list[tuple[str, str]] = []
        for b in beams:
            if b.triples and b.triples[-1].chunk_id:
                wanted.append((b.triples[-1].chunk_id, "graph-path"))
            row = snap.entity_row.get(b.tail.id)
            if row is None:
                continue
            adj = snap.adjacency
            cols = [int(c) for c in adj.indices[adj.indptr[row]:adj.indptr[row + 1]]
                    if c >= snap.n_entities]
            if cols:
                best = max(cols, key=lambda c: (rank.scores[c], -c))
                wanted.append((snap.chunk_ids[best - snap.n_entities], "graph-entity"))
        new = [cid for cid, _ in wanted if cid not in read]
        chunks = {c.id: c for c in self.graph.get_chunks(new)}
        for cid, source in wanted:
            if cid in chunks and cid not in read:
                read[cid] = ScoredChunk(chunks[cid], rank.passage_score(cid), source)

    def source_chunks(self, paths: Sequence[ReasoningPath], topic_ids: Sequence[str]
                      ) -> list[ScoredChunk]:
        """The chunks the path triples came from, then chunks mentioning the reached and
        topic entities (mutual indexing), without repeats."""
        ordered: dict[str, tuple[float, str]] = {}
        for p in sorted(paths, key=lambda p: -p.score):
            for t in p.triples:
                if t.chunk_id and t.chunk_id not in ordered:
                    ordered[t.chunk_id] = (p.score, "graph-path")
        reached = [t.object_id for p in paths for t in p.triples] + \
                  [t.subject_id for p in paths for t in p.triples] + list(topic_ids)
        if self.chunks:
            for ch in self.graph.chunks_mentioning(list(dict.fromkeys(reached)),
                                                   limit=self.chunks):
                ordered.setdefault(ch.id, (0.0, "graph-mention"))
        chunks = {c.id: c for c in self.graph.get_chunks(list(ordered))}
        return [ScoredChunk(chunks[cid], score, source)
                for cid, (score, source) in ordered.items() if cid in chunks]


def relation_text(entity: str, predicate: str, outgoing: bool) -> str:
    """How a relation reads to a scorer: "Marie Curie married ?" / "? married Marie Curie"."""
    return f"{entity} {predicate} ?" if outgoing else f"? {predicate} {entity}"


def step_text(t: Triple) -> str:
    """How one path step reads to a scorer: the fact, or for a passage hop the entity it
    reaches (the shared passage says nothing a scorer can use)."""
    return t.object if is_passage_hop(t) else t.text()
