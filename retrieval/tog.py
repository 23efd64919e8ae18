"""Think-on-Graph: beam search over the knowledge graph, guided by the question.

Per depth, as in ToG (PAPERS.md A1):
1. relation exploration: the predicates around each frontier entity (Cypher);
2. relation pruning: the top-W relations per frontier entity, scored against the question;
3. entity exploration: neighbours along each kept relation, up to 5 per relation;
4. entity pruning: the top-W extended paths over all candidates;
5. sufficiency check: can the question be answered from the paths? yes -> stop.
The reached entities bring their source chunks (ToG-2 / KAG), so the context is paths and
text. Every depth is recorded as a `SearchStep` for the UI.

    >>> reasoner = ThinkOnGraphReasoner(graph, EmbeddingScorer(embedder))  # doctest: +SKIP
    >>> found = reasoner.search("Who did Marie Curie marry?", linker.link(q))
    >>> found.paths[0].text()                                              # doctest: +SKIP
    'Marie Curie married Pierre Curie'
"""

from __future__ import annotations

import logging
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
from retrieval.pruning import Scorer

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- stop checks


class SufficiencyCheck(Protocol):
    """Decides whether the paths found so far answer the question."""

    name: str

    def check(self, question: str, paths: Sequence[ReasoningPath]) -> bool: ...


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

    def check(self, question: str, paths: Sequence[ReasoningPath]) -> bool:
        facts = "\n".join(f"- {t.text()}" for t in unique_triples(paths)) or "(none)"
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

    def check(self, question: str, paths: Sequence[ReasoningPath]) -> bool:
        text = " ".join(t.text() for t in unique_triples(paths))
        return bool(text) and coverage(question, text) >= self.min_coverage


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
    stop check (None: search to depth D).
    """

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
    ) -> None:
        self.graph = graph
        self.relation_scorer = relation_scorer
        self.path_scorer = path_scorer or relation_scorer
        self.sufficiency = sufficiency
        self.width = width
        self.depth = depth
        self.entities_per_relation = entities_per_relation
        self.chunks = chunks

    def search(self, question: str, topics: Sequence[LinkedEntity], *,
               width: int | None = None, depth: int | None = None) -> GraphSearch:
        """Search from the topic entities; `width` / `depth` override the defaults (the
        rectify loop widens a search that found nothing relevant)."""
        width = width or self.width
        depth = depth or self.depth
        out = GraphSearch()
        beams = [Beam(t.entity, (), t.score) for t in topics[:width]]
        if not beams:
            out.stop_reason = "no topic entity"
            return out
        for d in range(1, depth + 1):
            step = SearchStep(depth=d, frontier=[_ref(b.tail, b.score) for b in beams])
            out.steps.append(step)
            candidates = self.expand(question, beams, width, step)
            if not candidates:
                out.dead_end = True
                out.stop_reason = f"dead end at depth {d}"
                step.note = "no unexplored neighbours along the kept relations"
                break
            beams = self.prune(question, candidates, width, step)
            step.kept = [_ref(b.tail, b.score) for b in beams]
            if self.sufficiency is not None:
                step.sufficient = self.sufficiency.check(question, [b.path() for b in beams])
                if step.sufficient:
                    out.sufficient = True
                    out.stop_reason = f"sufficient at depth {d}"
                    break
        else:
            out.stop_reason = f"depth limit {depth}"
        out.paths = [b.path() for b in beams if b.triples]
        out.chunks = self.source_chunks(out.paths, [t.entity.id for t in topics[:width]])
        return out

    # ------------------------------------------------------------------ one depth

    def expand(self, question: str, beams: Sequence[Beam], width: int,
               step: SearchStep) -> list[Beam]:
        """Relation exploration + pruning, then entity exploration: the candidate paths."""
        options: list[tuple[Beam, str, bool, int]] = []
        seen_tails: set[str] = set()
        for beam in beams:
            if beam.tail.id in seen_tails:  # two paths reaching one entity explore it once
                continue
            seen_tails.add(beam.tail.id)
            for predicate, outgoing, count in self.graph.relation_candidates(beam.tail.id):
                options.append((beam, predicate, outgoing, count))
        texts = [relation_text(b.tail.name, p, o) for b, p, o, _ in options]
        scores = self.relation_scorer.score(question, texts)
        kept: list[tuple[Beam, str, bool]] = []
        by_entity: dict[str, list[int]] = {}
        for i, (b, _, _, _) in enumerate(options):
            by_entity.setdefault(b.tail.id, []).append(i)
        keep_idx: set[int] = set()
        for idx in by_entity.values():
            best = sorted(idx, key=lambda i: (-scores[i], -options[i][3], texts[i]))[:width]
            keep_idx.update(best)
        for i, (b, p, o, _) in enumerate(options):
            step.relations.append(RelationChoice(entity=b.tail.name, predicate=p, outgoing=o,
                                                 score=round(scores[i], 4),
                                                 kept=i in keep_idx))
            if i in keep_idx:
                kept.append((b, p, o))
        candidates: list[Beam] = []
        for beam, predicate, outgoing in kept:
            on_path = beam.entity_ids()
            taken = 0
            for n in self.graph.neighbours(beam.tail.id, predicate,
                                           limit=self.entities_per_relation * 4):
                if taken >= self.entities_per_relation:
                    break
                if n.outgoing != outgoing or n.entity.id in on_path:
                    continue
                subj, obj = (beam.tail, n.entity) if outgoing else (n.entity, beam.tail)
                triple = Triple(subject=subj.name, predicate=predicate, object=obj.name,
                                subject_id=subj.id, object_id=obj.id, chunk_id=n.chunk_id)
                candidates.append(Beam(n.entity, (*beam.triples, triple), beam.score))
                taken += 1
        return candidates

    def prune(self, question: str, candidates: Sequence[Beam], width: int,
              step: SearchStep) -> list[Beam]:
        """Entity pruning: score every candidate path, keep the best `width`."""
        texts = ["; ".join(t.text() for t in c.triples) for c in candidates]
        scores = self.path_scorer.score(question, texts)
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
