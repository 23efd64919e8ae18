"""Scorers that rank candidate relations and paths against the question (ToG pruning).

Three behind one interface, as ToG's `--prune_tools`:
- `EmbeddingScorer`: cosine between the question and each option (no LLM call; default);
- `BM25Scorer`: lexical BM25 of the question over the options;
- `LLMScorer`: one schema-constrained call rating every option 0-10.

    >>> BM25Scorer().score("Where was she born?", ["born in", "married"])[0] > 0
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from core.errors import LLMCallError, LLMOutputError
from core.llm.base import ChatModel
from core.protocols import Embedder
from retrieval import prompts
from retrieval.lexical import BM25
from retrieval.llm_json import call_json

log = logging.getLogger(__name__)

PruningKind = Literal["llm", "embedding", "bm25"]


class Scorer(Protocol):
    """Scores options for a question; higher is more useful. One score per option."""

    name: str

    def score(self, question: str, options: Sequence[str]) -> list[float]: ...


class EmbeddingScorer:
    """Cosine similarity of question and option embeddings (SentenceBERT pruning in ToG)."""

    name = "embedding"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def score(self, question: str, options: Sequence[str]) -> list[float]:
        if not options:
            return []
        vecs = self.embedder.embed([question, *options])
        return [float(x) for x in vecs[1:] @ vecs[0]]


class BM25Scorer:
    """BM25 of the question's content words over the options."""

    name = "bm25"

    def score(self, question: str, options: Sequence[str]) -> list[float]:
        if not options:
            return []
        return BM25(options).scores(question)


SCORES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"scores": {"type": "array", "items": {"type": "integer"}}},
    "required": ["scores"],
}


class LLMScorer:
    """One LLM call rating each option 0-10 (scaled to 0-1). Options past `max_options` score
    0; a missing score counts as 0. When the call fails, `fallback` scores instead."""

    name = "llm"

    def __init__(self, llm: ChatModel, *, max_options: int = 20,
                 fallback: Scorer | None = None) -> None:
        self.llm = llm
        self.max_options = max_options
        self.fallback = fallback or BM25Scorer()

    def score(self, question: str, options: Sequence[str]) -> list[float]:
        if not options:
            return []
        shown = list(options[: self.max_options])
        listing = "\n".join(f"{i + 1}. {o}" for i, o in enumerate(shown))
        try:
            data = call_json(self.llm, prompts.PRUNE_SYSTEM,
                             prompts.PRUNE_USER.format(question=question, options=listing),
                             SCORES_SCHEMA, max_tokens=8 + 4 * len(shown))
        except (LLMOutputError, LLMCallError) as exc:
            log.warning("LLM pruning failed (%s); scoring with %s", exc, self.fallback.name)
            return self.fallback.score(question, options)
        raw = [s for s in data.get("scores", []) if isinstance(s, int | float)]
        scores = [min(10.0, max(0.0, float(s))) / 10.0 for s in raw[: len(shown)]]
        return scores + [0.0] * (len(options) - len(scores))


def make_scorer(kind: PruningKind, embedder: Embedder | None, llm: ChatModel | None
                ) -> Scorer:
    """The scorer `tog_pruning` names; the embedding one needs an embedder, llm an LLM."""
    if kind == "llm":
        if llm is None:
            raise ValueError("llm pruning needs an LLM")
        return LLMScorer(llm, fallback=EmbeddingScorer(embedder) if embedder else None)
    if kind == "embedding":
        if embedder is None:
            raise ValueError("embedding pruning needs an embedder")
        return EmbeddingScorer(embedder)
    return BM25Scorer()
