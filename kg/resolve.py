"""Entity resolution: map each newly extracted entity to a canonical one.

A family behind one interface (as neo4j-graphrag's resolvers): exact (normalised name —
already the entity id), fuzzy (rapidfuzz, within a type) and semantic (embedding cosine
within a type). Merges are id rewrites, so applying them is idempotent, and the merged
entity keeps the other spellings as aliases.

Against the whole graph: the resolvers compare new names with candidates, and ingest
(`flows.graph_build`) draws them from every entity of the graph, not a window: the entity
embedding index's nearest names (paraphrases) and `NameBlocks`, the names that share a rare
word (spelling variants). bench/resolve_bench.py measures both at growing graph sizes.

Why the type is not part of the id (`core.models.entity_id`): a type comes from a small
model or from spaCy, and the same name gets several (of the 5,625 names spaCy finds in two
or more of the 10,033 Wikipedia lead sections, it labels 24% with two or more types; see
bench/resolve_bench.py), so a typed id would split one entity into several. Types still
keep two names apart when the resolvers compare them (`_compatible`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from rapidfuzz import fuzz, process

from core.models import Entity, Mention, Proposition, Relation, normalise_name

# Letters NFKD does not split into a base letter and a mark.
_FOLD = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "\u0131": "i", "ß": "ss",
                       "æ": "ae", "œ": "oe", "þ": "th"})


def folded(name: str) -> str:
    """`normalise_name` without diacritics ("Skłodowska" -> "sklodowska"): the key that
    blocking and its ranking compare, so a spelling with or without accents meets."""
    s = unicodedata.normalize("NFKD", normalise_name(name))
    return "".join(ch for ch in s if not unicodedata.combining(ch)).translate(_FOLD)


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
        """Each new entity merges into its best-scoring compatible name at or above the
        threshold (known entities first on a tie), scored in rapidfuzz's C loop."""
        res = Resolution()
        pool = list(known)
        names = [normalise_name(k.name) for k in pool]
        for e in new:
            name = normalise_name(e.name)
            if len(name) >= self.min_length and pool and e.id not in {k.id for k in pool}:
                for _, _, j in process.extract(name, names, scorer=fuzz.token_sort_ratio,
                                               score_cutoff=self.threshold, limit=None):
                    if pool[j].id != e.id and _compatible(e, pool[j]):
                        res.canonical[e.id] = pool[j].id
                        break
            if e.id not in res.canonical:
                pool.append(e)
                names.append(name)
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


class NameBlocks:
    """Blocking for resolution against the whole graph: an inverted index from name words
    to entity ids, so a new name is compared only with the names that share a rare word.

    The embedding index finds paraphrases ("United States" / "USA") among its k nearest
    names; blocking finds the spelling variants it ranks lower in a big graph ("Marie
    Sklodowska-Curie" / "Marie Curie"). A word carried by more than `max_block` names
    ("university", "river") is too common to block on and is skipped; the candidates of a
    name are ranked by rapidfuzz and the best `limit` kept. Memory: one entry per word of
    each name (about 3 per entity).
    """

    def __init__(self, max_block: int = 500, min_word: int = 3) -> None:
        self.max_block = max_block
        self.min_word = min_word
        self.names: dict[str, set[str]] = {}
        self.blocks: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def words(self, name: str) -> set[str]:
        return {w for w in folded(name).split() if len(w) >= self.min_word}

    def add(self, names: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Index (entity id, name) pairs; an alias is added as another name of its id."""
        for id_, name in (names.items() if isinstance(names, Mapping) else names):
            key = folded(name)
            if not key:
                continue
            self.names.setdefault(id_, set()).add(key)
            for w in self.words(name):
                self.blocks.setdefault(w, set()).add(id_)

    def candidates(self, name: str, limit: int = 20) -> list[str]:
        """Ids whose name shares a rare word with `name`, most similar first."""
        ids: set[str] = set()
        for w in self.words(name):
            block = self.blocks.get(w)
            if block is not None and len(block) <= self.max_block:
                ids |= block
        if not ids:
            return []
        pairs = [(i, n) for i in sorted(ids) for n in self.names[i]]
        scores = process.cdist([folded(name)], [n for _, n in pairs],
                               scorer=fuzz.token_set_ratio)[0]
        best: dict[str, float] = {}
        for (id_, _), score in zip(pairs, scores, strict=True):
            best[id_] = max(best.get(id_, 0.0), float(score))
        return sorted(best, key=lambda i: (-best[i], i))[:limit]


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
