"""Adaptive-RAG router: no retrieval, single-step chunk retrieval, or multi-hop ToG.

The default `HeuristicRouter` costs nothing: greetings and arithmetic go direct; questions
that name a graph entity and look compositional (two entities, a relative clause, "of the",
a possessive) go to Think-on-Graph; everything else to chunk retrieval. `LLMRouter` asks
the model instead (one call). `--mode` overrides both.

    >>> HeuristicRouter().route("hello!", []).mode
    'direct'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.answer import Mode
from core.errors import LLMCallError, LLMOutputError
from core.llm.base import ChatModel
from retrieval import prompts
from retrieval.lexical import content_terms, tokens
from retrieval.linking import LinkedEntity
from retrieval.llm_json import call_json

log = logging.getLogger(__name__)

_GREETING = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|good (morning|afternoon|evening)|bye|goodbye|"
    r"how are you)\b[\s!.?,]*(there|kgrag|again)?[\s!.?]*$", re.IGNORECASE)
_ARITHMETIC = re.compile(r"^[\s\d.,+\-*/x\u00d7\u00f7^()%=]+$")
_MATH_WORDS = re.compile(
    r"^\s*(what is|what's|how much is|calculate|compute)\s+[\d\s.,+\-*/x\u00d7\u00f7^()%]+\??\s*$",
    re.IGNORECASE)
# Signs of a question that chains facts: relative clauses, "of the", possessives, both/and.
_COMPOSITIONAL = re.compile(
    r"\b(who|which|that|whose|whom)\b.*\b(who|which|that|whose|whom)\b|"
    r"\b(the|a|an)\s+\w+\s+(where|which|that|who|whom|whose|when)\b|"
    r"\bthe\s+\w+\s+of\b|"
    r"\b(of the|of a|'s|\u2019s|both|same|also|together with|along with|and the|than|"
    r"before|after|between)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Route:
    mode: Mode
    reason: str


class QueryRouter(Protocol):
    def route(self, question: str, linked: Sequence[LinkedEntity]) -> Route: ...


def needs_no_retrieval(question: str) -> str | None:
    """Why a question needs no lookup (greeting, arithmetic, nothing to look up), or None."""
    q = question.strip()
    if _GREETING.match(q):
        return "greeting"
    stripped = q.rstrip("?")
    if (_ARITHMETIC.match(stripped) and any(ch.isdigit() for ch in q)) or _MATH_WORDS.match(q):
        return "arithmetic"
    if not content_terms(q):
        return "no content words"
    return None


def looks_compositional(question: str, linked: Sequence[LinkedEntity]) -> str | None:
    """Why a question looks multi-hop, or None."""
    if len({e.span for e in linked}) >= 2:
        return "names two or more graph entities"
    m = _COMPOSITIONAL.search(question)
    if m:
        return f"compositional wording ({m.group(0).strip()[:30]!r})"
    return None


class HeuristicRouter:
    """Rule-based routing (no LLM call)."""

    def route(self, question: str, linked: Sequence[LinkedEntity]) -> Route:
        why = needs_no_retrieval(question)
        if why:
            return Route("direct", why)
        if linked:
            why = looks_compositional(question, linked)
            if why:
                return Route("tog", f"{len(linked)} linked entities; {why}")
            return Route("rag", f"{len(linked)} linked entities; single-fact question")
        return Route("rag", "no graph entity linked")


ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"route": {"type": "string", "enum": ["direct", "single", "multi"]}},
    "required": ["route"],
}


class LLMRouter:
    """One classification call (Adaptive-RAG's classifier, zero-shot). Multi-hop needs a
    linked entity to start from; a failed call routes by the heuristic."""

    def __init__(self, llm: ChatModel) -> None:
        self.llm = llm
        self.fallback = HeuristicRouter()

    def route(self, question: str, linked: Sequence[LinkedEntity]) -> Route:
        if len(tokens(question)) == 0:
            return Route("direct", "empty question")
        try:
            data = call_json(self.llm, prompts.ROUTER_SYSTEM,
                             prompts.ROUTER_USER.format(question=question), ROUTE_SCHEMA,
                             max_tokens=16)
        except (LLMOutputError, LLMCallError) as exc:
            log.warning("LLM routing failed (%s); using the heuristic", exc)
            return self.fallback.route(question, linked)
        label = data.get("route")
        if label == "direct":
            return Route("direct", "LLM router: no retrieval needed")
        if label == "multi" and linked:
            return Route("tog", "LLM router: multi-hop")
        return Route("rag", "LLM router: single-step" if label != "multi"
                     else "LLM router: multi-hop, but no entity linked")
