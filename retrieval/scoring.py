"""Scoring of answers against gold answers: SQuAD exact match and token F1 on short
answers, and "contains" for answers written as sentences.

Shared by `kgrag evaluate` (flows/evaluate.py) and the QA benchmarks (bench/qa_bench.py,
bench/qa_latency.py, bench/retrieval_bench.py), so both score the same way.

    >>> exact_match("The Radium Institute", "radium institute"), f1("Paris, France", "Paris")
    (1.0, 0.6666666666666666)
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)


def normalise(s: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, articles or extra spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalise(pred) == normalise(gold))


def f1(pred: str, gold: str) -> float:
    """Token F1 of the normalised answers (1.0 when both are empty)."""
    p, g = normalise(pred).split(), normalise(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if not p or not g or same == 0:
        return float(p == g)
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def contains(pred: str, gold: str) -> float:
    """1.0 when the normalised gold answer appears, as whole words, in the answer."""
    g = normalise(gold)
    return float(bool(g) and f" {g} " in f" {normalise(pred)} ")
