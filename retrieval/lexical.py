"""Word-level text handling of question answering: tokens, content terms, BM25.
(Sentences come from the project's one splitter, `core.nlp.split_sentences`.)

A small own BM25 (Okapi, k1=1.5, b=0.75) instead of a dependency: the documents it ranks
are a handful of relation and path texts per search step.

    >>> BM25(["born in Warsaw", "married Pierre Curie"]).scores("Where was she born?")[0] > 0
    True
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)

STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during",
    "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
    "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into",
    "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor",
    "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out",
    "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the",
    "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this",
    "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "whom", "whose", "why", "will",
    "with", "would", "you", "your", "yours", "also", "tell", "please", "name",
])


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, any script)."""
    return [t.casefold() for t in _TOKEN.findall(text)]


def content_terms(text: str) -> list[str]:
    """Tokens that carry meaning: no stopwords, no one-letter words."""
    return [t for t in tokens(text) if t not in STOPWORDS and len(t) > 1]


def coverage(question: str, text: str) -> float:
    """Share of the question's content terms that occur in `text`. Lexical on purpose;
    words of five letters or more also match on their first five ("married" ~ "marriage")."""
    wanted = set(content_terms(question))
    if not wanted:
        return 1.0
    return 1.0 - len(_missing(wanted, set(tokens(text)))) / len(wanted)


def novel_terms(claim: str, text: str, given: str = "") -> tuple[int, int]:
    """(novel, total): how many of the claim's distinct content terms neither `text` nor
    `given` (words the claim may take over, e.g. the question it answers) contains, matched
    as in `coverage`; and how many content terms the claim has. A name, number or word the
    evidence never mentions is the commonest trace of a hallucination."""
    wanted = set(content_terms(claim))
    if not wanted:
        return 0, 0
    have = set(tokens(text))
    if given:
        have |= set(tokens(given))
    return len(_missing(wanted, have)), len(wanted)


def _missing(wanted: set[str], have: set[str]) -> list[str]:
    prefixes = {h[:5] for h in have if len(h) >= 5}
    return [w for w in wanted if w not in have and not (len(w) >= 5 and w[:5] in prefixes)]


class BM25:
    """Okapi BM25 over a small fixed set of documents."""

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(content_terms(d)) for d in documents]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg_len = (sum(self.lengths) / len(self.docs)) if self.docs else 0.0
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        # The +1 keeps idf positive even for a term in every document (a 2-document corpus).
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = content_terms(query)
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            s = 0.0
            norm = self.k1 * (1 - self.b + self.b * length / self.avg_len) if self.avg_len \
                else self.k1
            for t in terms:
                f = doc.get(t, 0)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            out.append(s)
        return out
