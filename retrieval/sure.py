"""SuRe answers: candidates, a summary for each, verified and ranked (Kim et al., ICLR 2024).

Instead of one free-form answer, the model (1) proposes a few short answer candidates from
the numbered sources, (2) writes for each candidate a summary of the sources as evidence
for it (the candidate-conditioned summary, with citations), (3) checks each summary
pointwise (does it support its candidate from the sources?), and (4) ranks the surviving
summaries pairwise. The best candidate is the short answer; its summary is the rationale,
cited like any other answer, so the grounding verifier and the UI treat it the same way.

Calls per question: 1 + 2K (+ K(K-1)/2 pairwise comparisons when several summaries pass),
K = `sure_candidates` (default 2: 6 calls at most).

    >>> SuReGenerator(llm).generate("Who?", sources).short_answer  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from core.answer import Sentence
from core.errors import LLMOutputError
from core.llm.base import ChatModel, TextSink
from retrieval import prompts
from retrieval.generate import AnswerGenerator, Generated, Sources, parse_sentences, refusal
from retrieval.llm_json import call_json

log = logging.getLogger(__name__)

CANDIDATES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"candidates": {"type": "array", "minItems": 1,
                                  "items": {"type": "string"}}},
    "required": ["candidates"],
}

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string"},
                   "citations": {"type": "array", "items": {"type": "string"}}},
    "required": ["summary", "citations"],
}

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"valid": {"type": "boolean"}},
    "required": ["valid"],
}

PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"better": {"type": "string", "enum": ["A", "B"]}},
    "required": ["better"],
}


@dataclass
class Candidate:
    """One answer candidate with its summary, verdict and pairwise wins."""

    answer: str
    summary: list[Sentence] = field(default_factory=list)
    valid: bool = False
    wins: int = 0

    @property
    def summary_text(self) -> str:
        return " ".join(s.text for s in self.summary)


class SuReGenerator(AnswerGenerator):
    """An `AnswerGenerator` whose `generate` is SuRe: same sources in, cited sentences out,
    plus the chosen short answer and every candidate's summary (the rationale)."""

    def __init__(self, llm: ChatModel, *, candidates: int = 2, max_tokens: int = 256,
                 max_chunk_chars: int = 1200) -> None:
        super().__init__(llm, max_tokens=max_tokens, max_chunk_chars=max_chunk_chars)
        self.k = max(1, candidates)

    def generate(self, question: str, sources: Sources, *, strict: bool = False,
                 stream: TextSink | None = None) -> Generated:
        """SuRe streams nothing (`stream` is not written): its answer is only chosen
        after every candidate's calls."""
        if sources.empty:
            return Generated([Sentence(text=refusal(question))], cannot_answer=True)
        rendered = sources.render(self.max_chunk_chars)
        found = self.candidates(question, rendered)
        if not found:
            return Generated([Sentence(text=refusal(question))], cannot_answer=True)
        for c in found:
            c.summary = self.summarise(question, rendered, c.answer, sources, strict)
            c.valid = bool(c.summary) and self.verify(question, c)
        valid = [c for c in found if c.valid]
        for a, b in itertools.combinations(valid, 2):
            (a if self.prefer(question, a, b) else b).wins += 1
        if not valid:
            return Generated([Sentence(text=refusal(question))], cannot_answer=True,
                             rationale=_rationale(found))
        # Most pairwise wins; ties keep the model's own candidate order.
        best = max(valid, key=lambda c: (c.wins, -found.index(c)))
        cited = list(dict.fromkeys(x for s in best.summary for x in s.citations))
        head = Sentence(text=_answer_sentence(best.answer), citations=cited)
        return Generated([head, *best.summary], short_answer=best.answer,
                         rationale=_rationale(found))

    # ------------------------------------------------------------------ the four steps

    def candidates(self, question: str, rendered: str) -> list[Candidate]:
        try:
            data = call_json(self.llm, prompts.SURE_CANDIDATES_SYSTEM.format(k=self.k),
                             prompts.SURE_CANDIDATES_USER.format(sources=rendered,
                                                                 question=question),
                             CANDIDATES_SCHEMA, max_tokens=64 + 24 * self.k,
                             examples=[(prompts.SURE_CANDIDATES_EXAMPLE_USER,
                                        prompts.SURE_CANDIDATES_EXAMPLE_OUTPUT)])
        except LLMOutputError as exc:
            log.warning("SuRe candidates: unusable output: %s", exc)
            return []
        out: list[Candidate] = []
        seen: set[str] = set()
        for raw in data.get("candidates") or []:
            text = " ".join(str(raw).split()).strip(" .")
            key = text.casefold()
            if text and key not in seen and not key.startswith("the sources do not"):
                seen.add(key)
                out.append(Candidate(text[:200]))
        return out[: self.k]

    def summarise(self, question: str, rendered: str, answer: str, sources: Sources,
                  strict: bool) -> list[Sentence]:
        system = prompts.SURE_SUMMARY_SYSTEM + (prompts.ANSWER_STRICT if strict else "")
        try:
            data = call_json(self.llm, system,
                             prompts.SURE_SUMMARY_USER.format(sources=rendered,
                                                              question=question, answer=answer),
                             SUMMARY_SCHEMA, max_tokens=self.max_tokens)
        except LLMOutputError as exc:
            log.warning("SuRe summary: unusable output: %s", exc)
            return []
        return parse_sentences([{"text": data.get("summary", ""),
                                 "citations": data.get("citations") or []}], sources)

    def verify(self, question: str, c: Candidate) -> bool:
        try:
            data = call_json(self.llm, prompts.SURE_VERIFY_SYSTEM,
                             prompts.SURE_VERIFY_USER.format(question=question, answer=c.answer,
                                                             summary=c.summary_text),
                             VERDICT_SCHEMA, max_tokens=16)
        except LLMOutputError as exc:
            log.warning("SuRe verify: unusable output: %s", exc)
            return False
        return data.get("valid") is True

    def prefer(self, question: str, a: Candidate, b: Candidate) -> bool:
        """True when summary A is judged the better rationale for the question."""
        try:
            data = call_json(self.llm, prompts.SURE_RANK_SYSTEM,
                             prompts.SURE_RANK_USER.format(question=question,
                                                           a=a.summary_text, b=b.summary_text),
                             PAIRWISE_SCHEMA, max_tokens=16)
        except LLMOutputError as exc:
            log.warning("SuRe ranking: unusable output: %s", exc)
            return True
        return data.get("better") != "B"


def _answer_sentence(answer: str) -> str:
    text = answer.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _rationale(found: list[Candidate]) -> list[dict[str, Any]]:
    return [{"answer": c.answer, "summary": c.summary_text, "valid": c.valid, "wins": c.wins}
            for c in found]
