"""Entity resolution: map each newly extracted entity to a canonical one.

A family behind one interface (as neo4j-graphrag's resolvers): exact (normalised name —
already the entity id), fuzzy (rapidfuzz, within a type) and semantic (embedding cosine
within a type). Merges are id rewrites, so applying them is idempotent, and the merged
entity keeps the other spellings as aliases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from rapidfuzz import fuzz

from core.models import Entity, Mention, Proposition, Relation, normalise_name


@dataclass
class Resolution:
    """`canonical[id]` is the id an entity merges into (absent: it stays itself)."""

    canonical: dict[str, str] = field(default_factory=dict)

    def of(self, entity_id: str) -> str:
        seen = set()
        while entity_id in self.canonical and entity_id not in seen:
            seen.add(entity_id)
            entity_id = self.canonical[entity_id]
        return entity_id


class EntityResolver(Protocol):
    def resolve(self, new: Sequence[Entity], known: Sequence[Entity]) -> Resolution: ...


def _compatible(a: Entity, b: Entity) -> bool:
    return not a.type or not b.type or a.type.casefold() == b.type.casefold()


class FuzzyResolver:
    """Merges names whose token-sort similarity is at least `threshold` (0-100)."""

    def __init__(self, threshold: float = 92.0, min_length: int = 5) -> None:
        self.threshold = threshold
        self.min_length = min_length  # short names ("UK", "MIT") merge only exactly

    def resolve(self, new: Sequence[Entity], known: Sequence[Entity]) -> Resolution:
        res = Resolution()
        pool = list(known)
        for e in new:
            name = normalise_name(e.name)
            if len(name) >= self.min_length:
                for k in pool:
                    if k.id == e.id or not _compatible(e, k):
                        continue
                    if fuzz.token_sort_ratio(name, normalise_name(k.name)) >= self.threshold:
                        res.canonical[e.id] = k.id
                        break
            if e.id not in res.canonical:
                pool.append(e)
        return res


class EmbeddingResolver:
    """Merges names whose embedding cosine is at least `threshold`, within a type."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray],
                 threshold: float = 0.93) -> None:
        self.embed = embed
        self.threshold = threshold

    def resolve(self, new: Sequence[Entity], known: Sequence[Entity]) -> Resolution:
        res = Resolution()
        pool = [k for k in known]
        if not new:
            return res
        vec_new = self.embed([e.name for e in new])
        vec_pool = self.embed([k.name for k in pool]) if pool else vec_new[:0]
        for i, e in enumerate(new):
            if len(pool):
                sims = vec_pool @ vec_new[i]
                for j in np.argsort(-sims):
                    if sims[j] < self.threshold:
                        break
                    if pool[j].id != e.id and _compatible(e, pool[j]):
                        res.canonical[e.id] = pool[j].id
                        break
            if e.id not in res.canonical:
                pool.append(e)
                vec_pool = np.vstack([vec_pool, vec_new[i:i + 1]])
        return res


class ChainResolver:
    """Runs resolvers in order; later ones see the earlier merges."""

    def __init__(self, resolvers: Sequence[EntityResolver]) -> None:
        self.resolvers = list(resolvers)

    def resolve(self, new: Sequence[Entity], known: Sequence[Entity]) -> Resolution:
        res = Resolution()
        remaining = list(new)
        for r in self.resolvers:
            step = r.resolve(remaining, known)
            res.canonical.update(step.canonical)
            remaining = [e for e in remaining if e.id not in step.canonical]
        return res


@dataclass
class ResolvedFacts:
    entities: list[Entity]
    mentions: list[Mention]
    relations: list[Relation]
    propositions: list[Proposition]


def apply_resolution(res: Resolution, entities: Sequence[Entity], known: Sequence[Entity],
                     mentions: Sequence[Mention], relations: Sequence[Relation],
                     propositions: Sequence[Proposition]) -> ResolvedFacts:
    """Rewrite ids to canonical ones; merged names become aliases of the canonical entity."""
    by_id = {e.id: e for e in known}
    for e in entities:
        target = res.of(e.id)
        base = by_id.get(target) or (e if target == e.id else None)
        if base is None:  # canonical is another new entity not seen yet
            base = next(x for x in entities if x.id == target)
        aliases = set(base.aliases)
        if e.name != base.name:
            aliases.add(e.name)
        by_id[target] = base.model_copy(update={
            "aliases": tuple(sorted(aliases)),
            "type": base.type or e.type,
            "description": base.description or e.description,
        })
    touched = {res.of(e.id) for e in entities}
    return ResolvedFacts(
        entities=[by_id[i] for i in sorted(touched)],
        mentions=sorted({Mention(entity_id=res.of(m.entity_id), chunk_id=m.chunk_id)
                         for m in mentions}, key=lambda m: (m.entity_id, m.chunk_id)),
        relations=[r.model_copy(update={"subject_id": res.of(r.subject_id),
                                        "object_id": res.of(r.object_id)})
                   for r in relations if res.of(r.subject_id) != res.of(r.object_id)],
        propositions=[p.model_copy(update={
            "entity_ids": tuple(sorted({res.of(i) for i in p.entity_ids}))})
            for p in propositions],
    )
