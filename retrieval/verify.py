"""Verifiers: is each answer sentence grounded in what it cites, and if the answer is bad,
was retrieval or generation at fault?

MiniCheck's recipe (`check_claim`, `GroundingVerifier`): a claim is split into sentences;
each sentence is scored against every piece of its evidence (sentence-aligned, cut to the
checker's length); a sentence's support is its best piece (chunked max), a claim's is its
weakest sentence. The verifier also narrows each answer sentence's citations to the
sources that support it. Checkers behind one interface, each giving a probability per
piece (0.5 or more: supported):
- `CrossEncoderGroundingChecker` (retrieval.checker): the trained checker, the default;
- `LLMGroundingChecker`: one call per (claim, piece), scored by the log-probability of
  its "true" verdict; the configured LLM or a dedicated checker model on vLLM;
- `EmbeddingGroundingChecker`: no model call — best cosine between the claim and an
  evidence sentence, scaled by how many of the claim's names and numbers the evidence holds.

`Diagnoser` (KALMV): evidence irrelevant to the question -> `retrieval_error` (re-retrieve,
wider); evidence relevant but sentences unsupported -> `generation_error` (regenerate).

    >>> checker = EmbeddingGroundingChecker(embedder)                        # doctest: +SKIP
    >>> GroundingVerifier(checker).verify(sentences, sources)[0].verification.label
    'supported'                                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.answer import DiagnosisLabel, Sentence, Verdict, VerdictLabel
from core.errors import LLMCallError
from core.llm.base import ChatModel, Completion, CompletionRequest, Message, complete
from core.nlp import split_sentences
from core.protocols import Embedder
from retrieval import prompts
from retrieval.generate import Sources
from retrieval.lexical import content_terms, coverage

log = logging.getLogger(__name__)

_KEY = re.compile(r"\b(?:\d[\d.,]*|[A-Z][\w\-\u2019']+)")


@dataclass(frozen=True)
class Piece:
    """A piece of evidence a claim is checked against, and the sources it comes from."""

    source_ids: tuple[str, ...]
    text: str


def split_pieces(text: str, max_words: int = 200) -> list[str]:
    """Sentence-aligned pieces of at most about `max_words` words (MiniCheck's chunking); a
    sentence longer than that is cut into word windows."""
    pieces: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in split_sentences(text) or [text]:
        parts = sentence.split()
        for k in range(0, max(1, len(parts)), max_words):
            s = " ".join(parts[k:k + max_words])
            n = len(s.split())
            if current and words + n > max_words:
                pieces.append(" ".join(current))
                current, words = [], 0
            current.append(s)
            words += n
    if current:
        pieces.append(" ".join(current))
    return [p for p in pieces if p]


class GroundingChecker(Protocol):
    """Scores a claim against evidence pieces: one support probability per piece (0.5 or
    more: supported), or None for a piece it did not check (a checker may stop early)."""

    name: str

    @property
    def piece_words(self) -> int:
        """Evidence words per piece that fit the checker."""

    @property
    def exhaustive(self) -> bool:
        """Cheap enough to score every source of the context."""

    def scores(self, claim: str, texts: Sequence[str], context: str = ""
               ) -> list[float | None]:
        """`context`: what the claim answers (the question); a checker may use it."""
        ...


def best_support(checker: GroundingChecker, claim: str, texts: Sequence[str]
                 ) -> tuple[float, int | None]:
    """Chunked max: the best piece's score and its index (0.0, None without pieces)."""
    scored = [(s, i) for i, s in enumerate(checker.scores(claim, texts)) if s is not None]
    if not scored:
        return 0.0, None
    score, index = max(scored)
    return score, index


SUPPORTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}},
    "required": ["supported"],
}


def verdict_probability(completion: Completion) -> float | None:
    """P(true) / (P(true) + P(false)) at the token where the model wrote its verdict, from
    the top log-probabilities the backend returned; None when it returned none."""
    for text, top in zip(completion.tokens, completion.top_logprobs, strict=False):
        word = text.strip().strip('"').lower()
        if word not in ("true", "false"):
            continue
        p = {w: sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == w)
             for w in ("true", "false")}
        if p["true"] + p["false"] > 0:
            return p["true"] / (p["true"] + p["false"])
        return 1.0 if word == "true" else 0.0
    return None


class LLMGroundingChecker:
    """MiniCheck with an LLM: one schema-constrained call per piece, most word-overlap first,
    at most `max_pieces` calls, stopping at the first piece scored supported. The score is
    the probability of "true" at the verdict token (from the backend's log-probabilities),
    so it ranks claims instead of only splitting them; 1.0 / 0.0 when the backend gives no
    log-probabilities."""

    name = "llm"
    piece_words = 200
    exhaustive = False

    def __init__(self, llm: ChatModel, max_pieces: int = 2, top_logprobs: int = 5) -> None:
        self.llm = llm
        self.max_pieces = max_pieces
        self.top_logprobs = top_logprobs

    def score_one(self, claim: str, text: str) -> float | None:
        user = prompts.GROUNDING_USER.format(document=text, claim=claim)
        messages: list[Message] = [{"role": "system", "content": prompts.GROUNDING_SYSTEM},
                                   {"role": "user", "content": user}]
        request = CompletionRequest.of(messages, json_schema=SUPPORTED_SCHEMA, max_tokens=16,
                                       temperature=0.0).with_(top_logprobs=self.top_logprobs)
        try:
            completion = complete(self.llm, request)
        except LLMCallError as exc:
            log.warning("grounding check failed (%s); counting it unsupported", exc)
            return None
        p = verdict_probability(completion)
        if p is not None:
            return p
        try:
            data = json.loads(completion.text)
        except json.JSONDecodeError:
            log.warning("grounding check returned %r; counting it unsupported",
                        completion.text[:80])
            return None
        return 1.0 if isinstance(data, dict) and data.get("supported") is True else 0.0

    def scores(self, claim: str, texts: Sequence[str], context: str = ""
               ) -> list[float | None]:
        out: list[float | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -coverage(claim, texts[i]))
        for i in order[: self.max_pieces]:
            out[i] = self.score_one(claim, texts[i])
            if out[i] is not None and (out[i] or 0.0) >= 0.5:
                break
        if all(s is None for s in out) and order:
            out[order[0]] = 0.0  # checked and failed: unsupported, not unknown
        return out


def key_overlap(claim: str, evidence: str) -> float:
    """Share of the claim's names and numbers (after its first word) found in the evidence."""
    body = claim.split(maxsplit=1)[1] if len(claim.split()) > 1 else ""
    keys = {k.casefold().rstrip(".,") for k in _KEY.findall(body)} - {"the", "a", "an"}
    if not keys:
        return 1.0
    have = evidence.casefold()
    return sum(1 for k in keys if k in have) / len(keys)


class EmbeddingGroundingChecker:
    """No-LLM checker: best claim-to-sentence cosine x (0.2 + 0.8 x key overlap): a name or
    number of the claim that the evidence lacks costs more than any paraphrase."""

    name = "embedding"
    piece_words = 200
    exhaustive = True

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def scores(self, claim: str, texts: Sequence[str], context: str = ""
               ) -> list[float | None]:
        sentences: list[tuple[int, str]] = [(i, s) for i, t in enumerate(texts)
                                            for s in (split_sentences(t) or [t])]
        out: list[float | None] = [0.0] * len(texts)
        if not sentences:
            return out
        vecs = self.embedder.embed([claim, *(s for _, s in sentences)])
        sims = vecs[1:] @ vecs[0]
        for (i, _), sim in zip(sentences, sims, strict=True):
            s = max(0.0, float(sim)) * (0.2 + 0.8 * key_overlap(claim, texts[i]))
            out[i] = min(1.0, max(out[i] or 0.0, s))
        return out


# --------------------------------------------------------------------------- MiniCheck


@dataclass(frozen=True)
class SentenceCheck:
    """One claim sentence: its support (best evidence score), the best evidence's index,
    and every evidence index that supports it, best first."""

    text: str
    score: float
    best: int | None
    supporting: list[int]
    evidence_scores: list[float | None]


@dataclass(frozen=True)
class ClaimCheck:
    """A claim checked MiniCheck's way: split into sentences, each scored against every
    piece of every evidence text (chunked to the checker's length), a sentence's support
    is its best piece, the claim's is its weakest sentence."""

    claim: str
    score: float
    supported: bool
    sentences: list[SentenceCheck]

    @property
    def best(self) -> int | None:
        """The evidence that best supports the weakest sentence."""
        weakest = min(self.sentences, key=lambda s: s.score, default=None)
        return weakest.best if weakest else None

    @property
    def supporting(self) -> list[int]:
        return sorted({i for s in self.sentences for i in s.supporting})


def check_claim(checker: GroundingChecker, claim: str, evidence: Sequence[str],
                threshold: float = 0.5, context: str = "") -> ClaimCheck:
    """Score `claim` against the `evidence` texts (see `ClaimCheck`); `context` is the
    question the claim answers, if any."""
    pieces = [(i, p) for i, text in enumerate(evidence)
              for p in split_pieces(text, checker.piece_words)]
    sentences = []
    for sentence in split_sentences(claim) or [claim.strip()]:
        scores = checker.scores(sentence, [p for _, p in pieces], context)
        per_evidence: list[float | None] = [None] * len(evidence)
        for (i, _), s in zip(pieces, scores, strict=True):
            if s is not None:
                per_evidence[i] = max(per_evidence[i] or 0.0, s)
        ranked = sorted((s, i) for i, s in enumerate(per_evidence) if s is not None)[::-1]
        best = ranked[0] if ranked else (0.0, None)
        sentences.append(SentenceCheck(sentence, round(best[0], 4), best[1],
                                       [i for s, i in ranked if s >= threshold],
                                       per_evidence))
    score = min((s.score for s in sentences), default=0.0)
    return ClaimCheck(claim, score, score >= threshold, sentences)


class GroundingVerifier:
    """Marks each answer sentence supported / unsupported against its evidence, and narrows
    its citations to the evidence that supports it.

    Each source (a chunk, cut into pieces the checker can read; a graph fact; the cited
    facts together) is scored against the sentence. The sentence's support is its best
    score; its citations become the sources scoring at or above the threshold, best first
    (at most `max_citations`), so a sentence cites what backs it, not all of the context.
    When nothing it cited supports it and the checker is cheap, the rest of the context is
    checked too; a sentence nothing supports cites nothing and is marked unsupported. A
    refusal ("The sources do not say ...") is left unverified and keeps its citations.
    """

    def __init__(self, checker: GroundingChecker, threshold: float = 0.5,
                 piece_words: int | None = None, max_citations: int = 3) -> None:
        self.checker = checker
        self.threshold = threshold
        self.piece_words = piece_words or checker.piece_words
        self.max_citations = max_citations

    def pieces(self, ids: Sequence[str], sources: Sources) -> list[Piece]:
        wanted = set(ids)
        chunks = [e for e in sources.evidence if e.id in wanted]
        facts = [f for f in sources.facts if f.id in wanted]
        out = [Piece((e.id,), text) for e in chunks
               for text in split_pieces(e.text, self.piece_words)]
        out += [Piece((f.id,), f.triple.text() + ".") for f in facts]
        if len(facts) > 1:  # a sentence may join several facts (a multi-hop path)
            out.append(Piece(tuple(f.id for f in facts),
                             ". ".join(f.triple.text() for f in facts) + "."))
        return out

    def source_scores(self, text: str, ids: Sequence[str], sources: Sources,
                      question: str = "") -> dict[tuple[str, ...], float]:
        """Best score of each source (and of the cited facts together) for `text`."""
        pieces = self.pieces(ids, sources)
        best: dict[tuple[str, ...], float] = {}
        for piece, s in zip(pieces, self.checker.scores(text, [p.text for p in pieces],
                                                        question), strict=True):
            if s is not None:
                best[piece.source_ids] = max(best.get(piece.source_ids, 0.0), s)
        return best

    def check(self, text: str, cited: Sequence[str], sources: Sources, question: str = ""
              ) -> Verdict:
        everything = [e.id for e in sources.evidence] + [f.id for f in sources.facts]
        first = list(cited) or everything
        scores = self.source_scores(text, first, sources, question)
        checked = list(first)
        if self.checker.exhaustive and max(scores.values(), default=0.0) < self.threshold:
            rest = [i for i in everything if i not in set(first)]
            if rest:
                scores.update(self.source_scores(text, rest, sources, question))
                checked += rest
        if not scores:
            return Verdict(label="unsupported", score=0.0, method=self.checker.name,
                           checked=checked)
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        score = ranked[0][1]
        # The cited facts read together count only when no source backs the sentence
        # alone (a multi-hop path): else the join would cite facts that add nothing.
        if any(len(ids) == 1 and s >= self.threshold for ids, s in ranked):
            ranked = [(ids, s) for ids, s in ranked if len(ids) == 1]
        supporting: list[str] = []
        for ids, s in ranked:
            if s < self.threshold or len(supporting) >= self.max_citations:
                break
            supporting += [i for i in ids if i not in supporting]
        label: VerdictLabel = "supported" if score >= self.threshold else "unsupported"
        return Verdict(label=label, score=round(score, 4), evidence=supporting,
                       method=self.checker.name, checked=checked)

    def verify(self, sentences: Sequence[Sentence], sources: Sources, *,
               cannot_answer: bool = False, question: str = "") -> list[Sentence]:
        """Copies of `sentences` with their `verification` filled in and their citations
        narrowed to the evidence that supports them; the `question`'s words are not new
        in an answer sentence."""
        out = []
        for s in sentences:
            if cannot_answer or not content_terms(s.text):
                out.append(s.model_copy(update={"verification": Verdict(method="none")}))
                continue
            verdict = self.check(s.text, s.citations, sources, question)
            out.append(s.model_copy(update={"verification": verdict,
                                            "citations": list(verdict.evidence)}))
        return out


# --------------------------------------------------------------------------- KALMV


@dataclass(frozen=True)
class Diagnosis:
    label: DiagnosisLabel
    relevance: float
    support: float
    note: str = ""


def support_ratio(sentences: Sequence[Sentence]) -> float:
    checked = [s for s in sentences if s.verification.label != "unverified"]
    if not checked:
        return 1.0
    return sum(s.verification.label == "supported" for s in checked) / len(checked)


class Diagnoser:
    """KALMV's two error types from the evidence's relevance and the sentences' support."""

    def __init__(self, embedder: Embedder | None = None, relevance_threshold: float = 0.3
                 ) -> None:
        self.embedder = embedder
        self.relevance_threshold = relevance_threshold

    def relevance(self, question: str, sources: Sources) -> float:
        """Best cosine between the question and an evidence text (lexical coverage
        without an embedder)."""
        texts = [e.text for e in sources.evidence] + [f.triple.text() for f in sources.facts]
        if not texts:
            return 0.0
        if self.embedder is None:
            return max(coverage(question, t) for t in texts)
        vecs = self.embedder.embed([question, *texts])
        return float(max(vecs[1:] @ vecs[0]))

    def diagnose(self, question: str, sources: Sources, sentences: Sequence[Sentence],
                 cannot_answer: bool) -> Diagnosis:
        rel = self.relevance(question, sources)
        sup = support_ratio(sentences)
        if sources.empty:
            return Diagnosis("retrieval_error", rel, sup, "no evidence found")
        if rel < self.relevance_threshold:
            return Diagnosis("retrieval_error", rel, sup,
                             f"evidence barely relevant ({rel:.2f} < "
                             f"{self.relevance_threshold})")
        if cannot_answer:
            return Diagnosis("retrieval_error", rel, sup, "the evidence does not hold the answer")
        if sup < 1.0:
            return Diagnosis("generation_error", rel, sup,
                             f"{sum(s.verification.label == 'unsupported' for s in sentences)} "
                             "sentence(s) not supported by their citations")
        return Diagnosis("ok", rel, sup)
