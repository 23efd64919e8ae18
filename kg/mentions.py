"""The mention layer: entities, `MENTIONED_IN {count}` and `SYNONYM {score}` edges from
spaCy NER, with no LLM call (LinearRAG's relation-free graph; DESIGN.md, Data model).

    chunks -> NER (core.nlp) -> entity names -> one Entity per normalised name
           -> Mention(entity, chunk, count) -> synonym edges between entity names whose
              embeddings have cosine >= threshold (new entities against all known ones)

The entities are the same nodes the LLM extractor writes (`entity_id` of the name), so the
fact layer lands on this one. A chunk spaCy cannot process is reported and skipped.

    >>> layer = MentionExtractor(get_text_analyser()).run(chunks)        # doctest: +SKIP
    >>> [(e.name, e.type) for e in layer.entities][:2]                   # doctest: +SKIP
    [('Marie Curie', 'PERSON'), ('Warsaw', 'GPE')]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.models import Chunk, Entity, Mention, Synonym, entity_id, normalise_name
from core.nlp import mention_name
from core.protocols import EntityMention, TextAnalyser, VectorIndex

log = logging.getLogger(__name__)

@dataclass
class MentionLayer:
    """What the NER pass found in a batch of chunks."""

    entities: list[Entity] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (chunk id, reason)


class MentionExtractor:
    """Chunks -> entities and mention counts, one spaCy pass per batch."""

    def __init__(self, analyser: TextAnalyser, *, batch_size: int = 256) -> None:
        self.analyser = analyser
        self.batch_size = batch_size

    def run(self, chunks: Sequence[Chunk]) -> MentionLayer:
        out = MentionLayer()
        names: dict[str, tuple[str, str]] = {}  # id -> (name, type): first seen wins
        for i in range(0, len(chunks), self.batch_size):
            batch = list(chunks[i:i + self.batch_size])
            for chunk, found in zip(batch, self._analyse(batch, out), strict=True):
                if found is None:
                    continue
                counts: Counter[str] = Counter()
                for m in found:
                    name = mention_name(m)
                    if not name or not normalise_name(name):
                        continue
                    eid = entity_id(name)
                    names.setdefault(eid, (name, m.label))
                    counts[eid] += 1
                out.mentions += [Mention(entity_id=eid, chunk_id=chunk.id, count=n)
                                 for eid, n in sorted(counts.items())]
        out.entities = [Entity(id=eid, name=name, type=type_)
                        for eid, (name, type_) in names.items()]
        return out

    def _analyse(self, batch: list[Chunk], out: MentionLayer
                 ) -> list[Sequence[EntityMention] | None]:
        """Mentions per chunk; a batch spaCy fails on is retried chunk by chunk so that
        only the bad chunk is lost (and reported)."""
        try:
            return [a.mentions for a in self.analyser.analyse([c.text for c in batch])]
        except Exception as exc:
            if len(batch) == 1:
                out.failed.append((batch[0].id, str(exc)))
                log.warning("NER skipped chunk %s: %s", batch[0].id, exc)
                return [None]
        return [self._analyse([c], out)[0] for c in batch]


class SynonymLinker:
    """SYNONYM edges between a batch's new entities and every entity in the entity index,
    by name embedding (HippoRAG 2: cosine >= 0.8). Incremental: each new entity is added
    to the index, then searched; old pairs are never recomputed."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], index: VectorIndex, *,
                 threshold: float = 0.8, neighbours: int = 5) -> None:
        self.embed = embed
        self.index = index
        self.threshold = threshold
        self.neighbours = neighbours

    def link(self, entities: Sequence[Entity]) -> list[Synonym]:
        """Adds the entities the index lacks and returns their synonym edges, one per
        unordered pair (stored from the smaller id to the larger)."""
        new = list({e.id: e for e in entities if e.id not in self.index}.values())
        if not new:
            return []
        vectors = self.embed([e.name for e in new])
        self.index.add([e.id for e in new], vectors)
        pairs: dict[tuple[str, str], float] = {}
        for e, hits in zip(new, self.index.search(vectors, self.neighbours + 1), strict=True):
            for h in hits:
                if h.id == e.id or h.score < self.threshold:
                    continue
                a, b = sorted((e.id, h.id))
                pairs[(a, b)] = max(pairs.get((a, b), 0.0), round(float(h.score), 4))
        return [Synonym(source_id=a, target_id=b, score=s) for (a, b), s in sorted(pairs.items())]
