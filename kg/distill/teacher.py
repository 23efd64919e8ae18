"""The SynthKG teacher: several schema-constrained calls per chunk, one training target out.

    decontextualise (1 call) -> propositions (1 call) -> entities + triples per proposition
    (1 call each) -> assemble into the single-call `ChunkGraph` of `kg.extract`

The student is trained to produce that assembled graph from the plain single-call prompt
(`kg.extract.build_messages`) in one call; the teacher's calls and tokens per chunk are
kept so the saving can be reported.

    >>> teacher = SynthKGTeacher(llm)                                # doctest: +SKIP
    >>> examples = teacher.run([ChunkContext(chunk, "Marie Curie")])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from core.errors import KgragError
from core.llm.base import ChatModel, Completion, CompletionRequest, acomplete_many
from core.models import normalise_name
from kg.distill import prompts
from kg.extract import (
    MAX_ENTITIES,
    MAX_PROPOSITIONS,
    MAX_TRIPLES,
    ChunkContext,
    ChunkGraph,
    ExtractedEntity,
    ExtractedTriple,
)

Progress = Callable[[int, int], None]  # (chunks done, chunks total)


class _Decontextualised(BaseModel):
    text: str


class _Propositions(BaseModel):
    propositions: list[str] = Field(default_factory=list)


class _Triple(BaseModel):
    subject: str
    predicate: str
    object: str


class _PropositionGraph(BaseModel):
    entities: list[ExtractedEntity] = Field(default_factory=list)
    triples: list[_Triple] = Field(default_factory=list)


@dataclass
class TeacherExample:
    """One chunk's teacher result: the assembled graph, or why there is none, and its cost."""

    ctx: ChunkContext
    graph: ChunkGraph | None = None
    decontextualised: str = ""
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def cost(self) -> dict[str, int]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}


class TeacherStepError(KgragError):
    """One step of the teacher workflow gave no usable output."""


@dataclass
class _Spend:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: list[str] = field(default_factory=list)

    def add(self, reply: Completion) -> None:
        self.calls += 1
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens


def _context_line(template: str, previous: str) -> str:
    previous = previous[-400:].strip()
    return template.format(previous=previous) if previous else ""


def assemble_graph(propositions: Sequence[str],
                   per_proposition: Sequence[tuple[list[ExtractedEntity], list[_Triple]]],
                   ) -> ChunkGraph:
    """Merge per-proposition results into one `ChunkGraph` (entities deduplicated by
    normalised name; each triple's `p` is its proposition's index; a triple end missing
    from the entities is added as an entity, so the target is self-consistent)."""
    entities: dict[str, ExtractedEntity] = {}

    def add(e: ExtractedEntity) -> None:
        key = normalise_name(e.name)
        if not key:
            return
        known = entities.get(key)
        if known is None:
            entities[key] = ExtractedEntity(name=e.name.strip(), type=e.type.strip(),
                                            description=e.description.strip())
        else:
            known.type = known.type or e.type.strip()
            known.description = known.description or e.description.strip()

    triples: list[ExtractedTriple] = []
    seen: set[tuple[str, str, str]] = set()
    for p, (ents, trips) in enumerate(per_proposition):
        for e in ents:
            add(e)
        for t in trips:
            s, pred, o = t.subject.strip(), " ".join(t.predicate.split()), t.object.strip()
            key = (normalise_name(s), pred.casefold(), normalise_name(o))
            if not (key[0] and key[1] and key[2]) or key[0] == key[2] or key in seen:
                continue
            seen.add(key)
            add(ExtractedEntity(name=s))
            add(ExtractedEntity(name=o))
            triples.append(ExtractedTriple(subject=s, predicate=pred, object=o, p=p))
    return ChunkGraph(entities=list(entities.values())[:MAX_ENTITIES],
                      propositions=list(propositions), triples=triples[:MAX_TRIPLES])


class SynthKGTeacher:
    """Runs the multi-step SynthKG workflow on chunks with any `ChatModel` (a large model on
    vLLM in production, the local model here). Chunks are done one after the other; the
    per-proposition calls of a chunk run with `concurrency` in flight."""

    def __init__(self, llm: ChatModel, *, concurrency: int = 1,
                 max_propositions: int = MAX_PROPOSITIONS, max_tokens: int | None = None
                 ) -> None:
        self.llm = llm
        self.concurrency = concurrency
        self.max_propositions = max_propositions
        self.max_tokens = max_tokens

    def _request(self, system: str, user: str, schema: dict[str, Any]) -> CompletionRequest:
        return CompletionRequest.of([{"role": "system", "content": system},
                                     {"role": "user", "content": user}],
                                    json_schema=schema, max_tokens=self.max_tokens,
                                    temperature=0.0)

    async def _step(self, spend: _Spend, request: CompletionRequest,
                    model: type[BaseModel], step: str) -> Any:
        try:
            reply = await self.llm.acomplete(request)
        except KgragError as exc:
            spend.calls += 1
            raise TeacherStepError(f"{step}: {exc.message}") from exc
        spend.add(reply)
        return _parse(reply, model, step)

    async def aexample(self, ctx: ChunkContext) -> TeacherExample:
        """The teacher's graph of one chunk (never raises for a model failure: the example
        is returned with `error` set and the calls it spent)."""
        spend = _Spend()
        out = TeacherExample(ctx)
        try:
            await self._workflow(ctx, spend, out)
        except TeacherStepError as exc:
            out.error = exc.message[:500]
        out.calls, out.prompt_tokens = spend.calls, spend.prompt_tokens
        out.completion_tokens = spend.completion_tokens
        return out

    async def _workflow(self, ctx: ChunkContext, spend: _Spend, out: TeacherExample) -> None:
        title = ctx.title or "(untitled)"
        decon = await self._step(spend, self._request(
            prompts.DECONTEXT_SYSTEM,
            prompts.DECONTEXT_USER.format(
                title=title, context=_context_line(prompts.DECONTEXT_CONTEXT, ctx.previous),
                text=ctx.chunk.text),
            prompts.DECONTEXT_SCHEMA), _Decontextualised, "decontextualise")
        text = " ".join(decon.text.split()) or ctx.chunk.text
        out.decontextualised = text
        found = await self._step(spend, self._request(
            prompts.PROPOSITIONS_SYSTEM, prompts.PROPOSITIONS_USER.format(title=title, text=text),
            prompts.PROPOSITIONS_SCHEMA), _Propositions, "propositions")
        props = list(dict.fromkeys(" ".join(p.split()) for p in found.propositions))
        props = [p for p in props if p][:self.max_propositions]
        if not props:
            raise TeacherStepError("propositions: the teacher found none")
        requests = [self._request(prompts.TRIPLES_SYSTEM,
                                  prompts.TRIPLES_USER.format(title=title, proposition=p,
                                                              text=text),
                                  prompts.TRIPLES_SCHEMA) for p in props]
        replies = await acomplete_many(self.llm, requests, self.concurrency)
        per_prop: list[tuple[list[ExtractedEntity], list[_Triple]]] = []
        for i, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                spend.calls += 1
                reason = reply.message if isinstance(reply, KgragError) else repr(reply)
                raise TeacherStepError(f"triples of proposition {i}: {reason}")
            spend.add(reply)
            g = _parse(reply, _PropositionGraph, f"triples of proposition {i}")
            per_prop.append((g.entities, g.triples))
        out.graph = assemble_graph(props, per_prop)

    async def arun(self, contexts: Sequence[ChunkContext], progress: Progress | None = None
                   ) -> list[TeacherExample]:
        results = []
        for i, ctx in enumerate(contexts):
            results.append(await self.aexample(ctx))
            if progress is not None:
                progress(i + 1, len(contexts))
        return results

    def run(self, contexts: Sequence[ChunkContext], progress: Progress | None = None
            ) -> list[TeacherExample]:
        return asyncio.run(self.arun(contexts, progress))


def _parse(reply: Completion, model: type[BaseModel], step: str) -> Any:
    try:
        return model.model_validate_json(reply.text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TeacherStepError(f"{step}: invalid output at {where}: {first['msg']}; "
                               f"output began {reply.text[:80]!r}") from exc


def graph_json(graph: ChunkGraph) -> str:
    """The assistant turn of a training example: compact JSON in the extractor's format."""
    return json.dumps(graph.model_dump(), ensure_ascii=False)
