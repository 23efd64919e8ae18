"""Verifiers: is each answer sentence grounded in what it cites, and if the answer is bad,
was retrieval or generation at fault?

`GroundingVerifier` (MiniCheck style): the cited evidence is split into sentence-aligned
pieces; the claim is scored against the pieces and the best score is its support (chunked
max). Backends behind one interface:
- `LLMGroundingChecker`: one yes/no call per (claim, piece), stopping at the first
  supporting piece; the configured LLM or a dedicated checker model (MiniCheck on vLLM);
- `EmbeddingGroundingChecker`: no LLM call — best cosine between the claim and an evidence
  sentence, scaled by how many of the claim's names and numbers the evidence contains.

`Diagnoser` (KALMV): evidence irrelevant to the question -> `retrieval_error` (re-retrieve,
wider); evidence relevant but sentences unsupported -> `generation_error` (regenerate).

    >>> checker = EmbeddingGroundingChecker(embedder)                        # doctest: +SKIP
    >>> GroundingVerifier(checker).verify(sentences, sources)[0].verification.label
    'supported'                                                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.answer import DiagnosisLabel, Sentence, Verdict, VerdictLabel
from core.errors import LLMCallError, LLMOutputError
from core.llm.base import ChatModel
from core.protocols import Embedder
from retrieval import prompts
from retrieval.generate import Sources
from retrieval.lexical import content_terms, coverage, split_sentences
from retrieval.llm_json import call_json

log = logging.getLogger(__name__)

_KEY = re.compile(r"\b(?:\d[\d.,]*|[A-Z][\w\-\u2019']+)")


@dataclass(frozen=True)
class Piece:
    """A piece of evidence a claim is checked against, and the sources it comes from."""

    source_ids: tuple[str, ...]
    text: str


def split_pieces(text: str, max_words: int = 200) -> list[str]:
    """Sentence-aligned pieces of at most about `max_words` words (MiniCheck's chunking)."""
    pieces: list[str] = []
    current: list[str] = []
    words = 0
    for s in split_sentences(text) or [text]:
        n = len(s.split())
        if current and words + n > max_words:
            pieces.append(" ".join(current))
            current, words = [], 0
        current.append(s)
        words += n
    if current:
        pieces.append(" ".join(current))
    return pieces


class GroundingChecker(Protocol):
    """Scores a claim against pieces: (support 0..1, index of the best piece or None)."""

    name: str

    def support(self, claim: str, pieces: Sequence[Piece]) -> tuple[float, int | None]: ...


SUPPORTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}},
    "required": ["supported"],
}


class LLMGroundingChecker:
    """MiniCheck with an LLM: one schema-constrained yes/no call per piece, most word-overlap
    first, at most `max_pieces` calls, stopping at the first "supported"."""

    name = "llm"

    def __init__(self, llm: ChatModel, max_pieces: int = 2) -> None:
        self.llm = llm
        self.max_pieces = max_pieces

    def support(self, claim: str, pieces: Sequence[Piece]) -> tuple[float, int | None]:
        order = sorted(range(len(pieces)), key=lambda i: -coverage(claim, pieces[i].text))
        for i in order[: self.max_pieces]:
            user = prompts.GROUNDING_USER.format(document=pieces[i].text, claim=claim)
            try:
                data = call_json(self.llm, prompts.GROUNDING_SYSTEM, user, SUPPORTED_SCHEMA,
                                 max_tokens=16)
            except (LLMOutputError, LLMCallError) as exc:
                log.warning("grounding check failed (%s); counting it unsupported", exc)
                continue
            if data.get("supported") is True:
                return 1.0, i
        return 0.0, (order[0] if order else None)


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

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def support(self, claim: str, pieces: Sequence[Piece]) -> tuple[float, int | None]:
        sentences: list[tuple[int, str]] = [(i, s) for i, p in enumerate(pieces)
                                            for s in (split_sentences(p.text) or [p.text])]
        if not sentences:
            return 0.0, None
        vecs = self.embedder.embed([claim, *(s for _, s in sentences)])
        sims = vecs[1:] @ vecs[0]
        best_piece: int | None = None
        best = 0.0
        for (i, _), sim in zip(sentences, sims, strict=True):
            s = max(0.0, float(sim)) * (0.2 + 0.8 * key_overlap(claim, pieces[i].text))
            if s > best:
                best, best_piece = s, i
        return min(1.0, best), best_piece


class GroundingVerifier:
    """Marks each answer sentence supported / unsupported against the evidence it cites.

    A sentence citing nothing is checked against all the evidence (it must still be
    grounded); a refusal ("The sources do not say ...") is left unverified.
    """

    def __init__(self, checker: GroundingChecker, threshold: float = 0.5,
                 piece_words: int = 200) -> None:
        self.checker = checker
        self.threshold = threshold
        self.piece_words = piece_words

    def pieces(self, ids: Sequence[str], sources: Sources) -> list[Piece]:
        chunks = [e for e in sources.evidence if e.id in ids]
        facts = [f for f in sources.facts if f.id in ids]
        out = [Piece((e.id,), text) for e in chunks
               for text in split_pieces(e.text, self.piece_words)]
        if facts:  # the cited graph facts together form one piece
            out.append(Piece(tuple(f.id for f in facts),
                             ". ".join(f.triple.text() for f in facts) + "."))
        return out

    def verify(self, sentences: Sequence[Sentence], sources: Sources, *,
               cannot_answer: bool = False) -> list[Sentence]:
        """Copies of `sentences` with their `verification` filled in."""
        everything = [e.id for e in sources.evidence] + [f.id for f in sources.facts]
        out = []
        for s in sentences:
            if cannot_answer or not content_terms(s.text):
                out.append(s.model_copy(update={"verification": Verdict(method="none")}))
                continue
            pieces = self.pieces(s.citations or everything, sources)
            if not pieces:
                verdict = Verdict(label="unsupported", score=0.0, method=self.checker.name)
            else:
                score, best = self.checker.support(s.text, pieces)
                label: VerdictLabel = "supported" if score >= self.threshold \
                    else "unsupported"
                evidence = list(pieces[best].source_ids) if best is not None and \
                    label == "supported" else []
                verdict = Verdict(label=label, score=round(score, 4), evidence=evidence,
                                  method=self.checker.name)
            out.append(s.model_copy(update={"verification": verdict}))
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
