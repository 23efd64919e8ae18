"""GraphJudger step: score each extracted triple for support by its source chunk and drop
the unsupported ones.

Two judges behind one interface:
- `GroundingJudge` (default, zero LLM calls): subject and object must be grounded in the
  chunk text (fuzzy name match) and the verbalised triple must be close in embedding space
  to a sentence of the chunk. Cheap enough to run on every triple.
- `CheckerJudge` (zero LLM calls): the trained grounding checker (a MiniLM cross-encoder,
  `kgrag models train-checker`) scores the verbalised triple against the chunk, in pieces
  the checker fits; a triple's support is its best piece's probability.
- `LLMTripleJudge`: one batched, schema-constrained call per chunk returning a verdict per
  triple (the GraphJudger setting; best with a tuned judge model on vLLM).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from rapidfuzz import fuzz

from core.llm.base import ChatModel, CompletionRequest, acomplete_many
from core.models import Chunk, Entity, Relation
from core.nlp import split_sentences
from kg import prompts


@dataclass
class JudgedTriples:
    kept: list[Relation] = field(default_factory=list)
    dropped: list[Relation] = field(default_factory=list)


class TripleJudge(Protocol):
    threshold: float

    def score(self, chunk: Chunk, relations: Sequence[Relation],
              names: dict[str, str]) -> list[float]: ...


def verbalise(rel: Relation, names: dict[str, str]) -> str:
    return f"{names.get(rel.subject_id, rel.subject_id)} {rel.predicate} " \
           f"{names.get(rel.object_id, rel.object_id)}"


def judge(judge_: TripleJudge, chunk: Chunk, relations: Sequence[Relation],
          entities: Sequence[Entity]) -> JudgedTriples:
    """Score `relations` of `chunk`; keep those at or above the judge's threshold."""
    out = JudgedTriples()
    if not relations:
        return out
    names = {e.id: e.name for e in entities}
    for rel, s in zip(relations, judge_.score(chunk, relations, names), strict=True):
        scored = rel.model_copy(update={"judge_score": round(float(s), 4)})
        (out.kept if s >= judge_.threshold else out.dropped).append(scored)
    return out


class GroundingJudge:
    """Support = mean of name grounding (fuzzy, 0..1 per end) and the best cosine between
    the verbalised triple and a chunk sentence."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray],
                 threshold: float = 0.5) -> None:
        self.embed = embed
        self.threshold = threshold

    @staticmethod
    def grounding(name: str, text: str) -> float:
        if not name:
            return 0.0
        if name.casefold() in text.casefold():
            return 1.0
        return fuzz.partial_ratio(name.casefold(), text.casefold()) / 100.0

    def score(self, chunk: Chunk, relations: Sequence[Relation],
              names: dict[str, str]) -> list[float]:
        sentences = split_sentences(chunk.text) or [chunk.text]
        claims = [verbalise(r, names) for r in relations]
        vecs = self.embed([*claims, *sentences])
        sims = vecs[: len(claims)] @ vecs[len(claims):].T
        best = sims.max(axis=1)
        scores = []
        for rel, sim in zip(relations, best, strict=True):
            g = (self.grounding(names.get(rel.subject_id, ""), chunk.text)
                 + self.grounding(names.get(rel.object_id, ""), chunk.text)) / 2
            scores.append(0.5 * g + 0.5 * max(0.0, float(sim)))
        return scores


class SupportScorer(Protocol):
    """What `CheckerJudge` needs of a grounding checker (retrieval.checker)."""

    @property
    def piece_words(self) -> int: ...
    def probabilities(self, claims: Sequence[str], texts: Sequence[str]) -> np.ndarray: ...


class CheckerJudge:
    """Support = the trained checker's best probability over the chunk's pieces."""

    def __init__(self, checker: SupportScorer, threshold: float = 0.5) -> None:
        self.checker = checker
        self.threshold = threshold

    def score(self, chunk: Chunk, relations: Sequence[Relation],
              names: dict[str, str]) -> list[float]:
        from retrieval.verify import split_pieces

        claims = [verbalise(r, names) for r in relations]
        pieces = split_pieces(chunk.text, self.checker.piece_words) or [chunk.text]
        probs = self.checker.probabilities([c for c in claims for _ in pieces],
                                           [p for _ in claims for p in pieces])
        return [float(x) for x in probs.reshape(len(claims), len(pieces)).max(axis=1)]


JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdicts": {"type": "array", "items": {"type": "boolean"}}},
    "required": ["verdicts"],
}


class LLMTripleJudge:
    """One LLM call per chunk judging all its triples; a missing verdict counts as false."""

    def __init__(self, llm: ChatModel, threshold: float = 0.5) -> None:
        self.llm = llm
        self.threshold = threshold

    def request(self, chunk: Chunk, claims: Sequence[str]) -> CompletionRequest:
        facts = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(claims))
        user = prompts.JUDGE_USER.format(text=chunk.text, facts=facts)
        return CompletionRequest.of(
            [{"role": "system", "content": prompts.JUDGE_SYSTEM},
             {"role": "user", "content": user}],
            json_schema=JUDGE_SCHEMA, temperature=0.0)

    def score(self, chunk: Chunk, relations: Sequence[Relation],
              names: dict[str, str]) -> list[float]:
        claims = [verbalise(r, names) for r in relations]
        reply = asyncio.run(acomplete_many(self.llm, [self.request(chunk, claims)], 1))[0]
        if isinstance(reply, BaseException):
            return [0.0] * len(relations)  # no verdict: not supported
        try:
            verdicts = json.loads(reply.text).get("verdicts", [])
        except (json.JSONDecodeError, AttributeError):
            verdicts = []
        return [1.0 if i < len(verdicts) and verdicts[i] is True else 0.0
                for i in range(len(relations))]
