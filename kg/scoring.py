"""Soft-match scoring of extracted triples against reference triples.

Used by the extraction benchmark (`bench/extract_bench.py`, gold = WebNLG's DBpedia
triples) and by the distillation evaluation (`kg.distill.evaluate`, reference = the
teacher's triples).

Strings are normalised (NFKC, camelCase split, casefold, underscores and punctuation to
spaces, spaces squashed). A predicted triple matches a reference triple when subject,
predicate and object EACH match: equal after normalisation, or (soft) embedding cosine >=
the threshold. Matching is one-to-one (maximum bipartite matching), so a repeated
prediction cannot match one reference twice. Modes: `strict` (normalised equality only),
`soft`, and `pair` (subject and object soft-match, predicate ignored).

    >>> m = SoftMatcher(lambda xs: np.eye(len(xs)), threshold=0.8)
    >>> matched_triples([Predicted("Ada", ("born in",), "London")],
    ...                 [("ada", "bornIn", "London")], m, "strict")
    1
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Gold = tuple[str, str, str]
MODES = ("strict", "soft", "pair")


def normalise(s: str) -> str:
    """NFKC, camelCase split, casefold, underscores/punctuation to spaces, squashed."""
    s = unicodedata.normalize("NFKC", s)
    s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", s)
    s = re.sub(r"[\W_]+", " ", s.casefold())
    return " ".join(s.split())


@dataclass(frozen=True)
class Predicted:
    """A predicted triple; `predicates` are the alternative labels it may match with."""

    subject: str
    predicates: tuple[str, ...]
    object: str


class SoftMatcher:
    """Element match: normalised equality, or (soft) embedding cosine >= `threshold`."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], threshold: float) -> None:
        self.embed = embed
        self.threshold = threshold
        self._vec: dict[str, np.ndarray] = {}

    def prepare(self, strings: Sequence[str]) -> None:
        """Embed, in one batch, every normalised string not seen yet."""
        new = sorted({normalise(s) for s in strings} - set(self._vec) - {""})
        if new:
            self._vec.update(zip(new, self.embed(new), strict=True))

    def same(self, a: str, b: str, soft: bool = True) -> bool:
        na, nb = normalise(a), normalise(b)
        if not na or not nb:
            return False
        if na == nb:
            return True
        if not soft:
            return False
        self.prepare([a, b])
        return float(self._vec[na] @ self._vec[nb]) >= self.threshold

    def any_same(self, options: Sequence[str], b: str, soft: bool = True) -> bool:
        return any(self.same(a, b, soft) for a in options)


def max_matching(edges: list[list[int]], n_right: int) -> int:
    """Size of a maximum bipartite matching (Kuhn's augmenting paths); tiny inputs."""
    owner = [-1] * n_right

    def augment(left: int, seen: set[int]) -> bool:
        for right in edges[left]:
            if right in seen:
                continue
            seen.add(right)
            if owner[right] < 0 or augment(owner[right], seen):
                owner[right] = left
                return True
        return False

    return sum(augment(i, set()) for i in range(len(edges)))


def matched_triples(pred: Sequence[Predicted], gold: Sequence[Gold], m: SoftMatcher,
                    mode: str) -> int:
    """How many predicted triples match distinct gold triples (`strict`/`soft`/`pair`)."""
    soft = mode != "strict"
    edges = [[j for j, (gs, gp, go) in enumerate(gold)
              if m.same(p.subject, gs, soft) and m.same(p.object, go, soft)
              and (mode == "pair" or m.any_same(p.predicates, gp, soft))]
             for p in pred]
    return max_matching(edges, len(gold))


def found_entities(names: Sequence[str], gold: Sequence[Gold], m: SoftMatcher,
                   soft: bool) -> tuple[int, int]:
    """(gold entities matched by a predicted name, gold entities), per record."""
    wanted = {normalise(x): x for s, _, o in gold for x in (s, o)}
    hit = sum(any(m.same(n, g, soft) for n in names) for g in wanted.values())
    return hit, len(wanted)


@dataclass
class Counts:
    """Per-record counts behind micro P/R/F1 (kept per record for the bootstrap)."""

    predicted: list[int] = field(default_factory=list)
    gold: list[int] = field(default_factory=list)
    matched: list[int] = field(default_factory=list)

    def add(self, predicted: int, gold: int, matched: int) -> None:
        self.predicted.append(predicted)
        self.gold.append(gold)
        self.matched.append(matched)

    def prf(self, rows: Sequence[int] | None = None) -> tuple[float, float, float]:
        idx = range(len(self.gold)) if rows is None else rows
        m = sum(self.matched[i] for i in idx)
        p_n, g_n = sum(self.predicted[i] for i in idx), sum(self.gold[i] for i in idx)
        p = m / p_n if p_n else 0.0
        r = m / g_n if g_n else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)
