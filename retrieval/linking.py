"""Topic-entity linking: which graph entities a question is about.

Candidate spans come from the question itself (quoted phrases, capitalised spans such as
"Nobel Prize in Physics", and, when there are none, its content words). Each span is matched
two ways, and an entity keeps its best score:
- by name: `GraphStore.find_entities` (substring, exact first), rescored with rapidfuzz;
- by meaning: the span's embedding against the entity vector index ("name: description").
Matches under the threshold are dropped; each span contributes its best entity first.

    >>> linker = EntityLinker(graph, entity_index, embedder)      # doctest: +SKIP
    >>> [(e.entity.name, round(e.score, 2)) for e in linker.link("Where was Marie Curie born?")]
    [('Marie Curie', 1.0)]                                          # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from core.models import Entity
from core.protocols import Embedder, GraphStore, VectorIndex
from retrieval.lexical import STOPWORDS, content_terms

_WORD = r"(?:[A-Z\u00C0-\u00DE][\w'\u2019.\-]*|\d[\w\-]*)"
_CONNECTOR = r"(?:of|in|de|la|le|von|van|der|du|da|del|for|on|the)"
_CAPITALISED = re.compile(rf"{_WORD}(?:\s+(?:{_CONNECTOR}\s+)*{_WORD})*")
_QUOTED = re.compile(r"\"([^\"]{2,80})\"|“([^”]{2,80})”")
_CONNECTOR_SPLIT = re.compile(rf"\s+{_CONNECTOR}\s+")


@dataclass(frozen=True)
class LinkedEntity:
    """A graph entity the question names: the span that named it, score, and how matched."""

    entity: Entity
    span: str
    score: float
    via: str  # "name" | "vector"


def question_spans(question: str, content_fallback: bool = True) -> list[str]:
    """Spans of the question that may name entities, most specific first; with no
    capitalised or quoted span, its content words (unless `content_fallback` is off)."""
    spans: list[str] = [a or b for a, b in _QUOTED.findall(question)]
    for m in _CAPITALISED.finditer(question):
        words = m.group(0).strip(" .,;:?!'\u2019").split()
        while words and words[0].casefold() in STOPWORDS:  # "Did", "Who", "In", "The"
            words.pop(0)
        while words and words[-1].casefold() in STOPWORDS:
            words.pop()
        if words:
            spans.append(" ".join(words))
    if not spans and content_fallback:  # no names: try the content words, longest first
        spans = sorted(set(t for t in content_terms(question) if len(t) >= 4),
                       key=lambda t: (-len(t), t))
    return list(dict.fromkeys(s for s in spans if s))


def span_parts(span: str) -> list[str]:
    """Smaller pieces of a span, tried when the whole span matches nothing:
    "1903 Nobel Prize in Physics" -> "Nobel Prize in Physics", "Nobel Prize", "Physics"."""
    parts = []
    stripped = re.sub(r"^\d[\w\-]*\s+|\s+\d[\w\-]*$", "", span).strip()
    if stripped and stripped != span:
        parts.append(stripped)
    pieces = _CONNECTOR_SPLIT.split(stripped or span)
    if len(pieces) > 1:
        parts += [p for p in pieces if len(p) >= 3]
    return list(dict.fromkeys(parts))


def name_score(span: str, entity: Entity) -> float:
    """Fuzzy match of a span to an entity's name or aliases, 0..1. Equal names score 1;
    a name that merely contains the span scores lower the more it adds."""
    best = 0.0
    a = span.casefold()
    for name in (entity.name, *entity.aliases):
        b = name.casefold()
        s = (fuzz.token_sort_ratio(a, b) + fuzz.token_set_ratio(a, b)) / 200.0
        best = max(best, s)
    return best


class EntityLinker:
    """Finds the topic entities of a question (names + entity vector index)."""

    def __init__(
        self,
        graph: GraphStore,
        entity_index: VectorIndex | None = None,
        embedder: Embedder | None = None,
        *,
        threshold: float = 0.6,
        max_entities: int = 3,
        candidates_per_span: int = 5,
    ) -> None:
        self.graph = graph
        self.entity_index = entity_index
        self.embedder = embedder
        self.threshold = threshold
        self.max_entities = max_entities
        self.k = candidates_per_span

    def link(self, question: str) -> list[LinkedEntity]:
        """Linked entities, best first, at most `max_entities`, all at or above threshold."""
        chosen: dict[str, LinkedEntity] = {}
        for span in question_spans(question):
            found = self.match_span(span)
            if not found:
                for part in span_parts(span):
                    found = self.match_span(part)
                    if found:
                        break
            for m in found:
                if m.entity.id not in chosen or m.score > chosen[m.entity.id].score:
                    chosen[m.entity.id] = m
        ranked = sorted(chosen.values(), key=lambda m: (-m.score, m.entity.name))
        return ranked[: self.max_entities]

    def match_span(self, span: str) -> list[LinkedEntity]:
        """Entities matching one span: its best, and others nearly as good (within 0.05)."""
        scored: dict[str, LinkedEntity] = {}
        for e in self.graph.find_entities(span, limit=self.k * 2):
            s = name_score(span, e)
            scored[e.id] = LinkedEntity(e, span, round(s, 4), "name")
        for e, s in self.vector_matches([span])[0]:
            if e.id not in scored or s > scored[e.id].score:
                scored[e.id] = LinkedEntity(e, span, round(s, 4), "vector")
        good = sorted((m for m in scored.values() if m.score >= self.threshold),
                      key=lambda m: (-m.score, m.entity.name))
        if not good:
            return []
        return [m for m in good if m.score >= good[0].score - 0.05]

    def vector_matches(self, texts: Sequence[str]) -> list[list[tuple[Entity, float]]]:
        if self.entity_index is None or self.embedder is None or not len(self.entity_index):
            return [[] for _ in texts]
        hits = self.entity_index.search(self.embedder.embed(list(texts)), self.k)
        ids = sorted({h.id for row in hits for h in row})
        entities = {e.id: e for e in self.graph.get_entities(ids)}
        return [[(entities[h.id], float(h.score)) for h in row if h.id in entities]
                for row in hits]
