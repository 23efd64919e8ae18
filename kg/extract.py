"""One LLM call per chunk: entities, propositions and triples (Distill-SynthKG format).

The output is constrained by a JSON schema (llama.cpp grammar / vLLM guided decoding),
validated with pydantic, retried by the LLM layers, and on final failure recorded as a
failed chunk with its reason — never silently empty.

    >>> extractor = ChunkExtractor(llm)                          # doctest: +SKIP
    >>> results = extractor.run([ChunkContext(chunk, "Paris")])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from core.errors import KgragError
from core.llm.base import ChatModel, Completion, CompletionRequest, acomplete_many
from core.models import (
    Chunk,
    Entity,
    Mention,
    Proposition,
    Relation,
    entity_id,
    normalise_name,
)
from kg import prompts

MAX_ENTITIES = 25
MAX_PROPOSITIONS = 15
MAX_TRIPLES = 25
MAX_NAME = 100
MAX_DESCRIPTION = 300


class ExtractedEntity(BaseModel):
    name: str
    type: str = ""
    description: str = ""


class ExtractedTriple(BaseModel):
    subject: str
    predicate: str
    object: str
    p: int = Field(default=-1, description="index of the proposition it comes from")


class ChunkGraph(BaseModel):
    """What the model returns for one chunk."""

    entities: list[ExtractedEntity] = Field(default_factory=list)
    propositions: list[str] = Field(default_factory=list)
    triples: list[ExtractedTriple] = Field(default_factory=list)


_STRING: dict[str, Any] = {"type": "string"}

#: Inlined (no $ref) so every grammar compiler takes it. No maxLength / maxItems: llama.cpp
#: turns them into repetition rules that slowed generation about 3x here; long values are
#: cut in `to_records` instead, and max_tokens bounds the whole output. `minItems: 1` on
#: entities and triples: without it the 0.5B model returned `[]` for 55% of WebNLG chunks
#: (valid JSON, no facts); with it 0/20, and soft triple F1 0.062 -> 0.100 (bench/README).
CHUNK_GRAPH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"name": _STRING, "type": _STRING, "description": _STRING},
                "required": ["name", "type", "description"],
            },
        },
        "propositions": {"type": "array", "items": _STRING},
        "triples": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"subject": _STRING, "predicate": _STRING, "object": _STRING,
                               "p": {"type": "integer"}},
                "required": ["subject", "predicate", "object", "p"],
            },
        },
    },
    "required": ["entities", "propositions", "triples"],
}


@dataclass(frozen=True)
class ChunkContext:
    """A chunk plus the document context the extractor sees with it."""

    chunk: Chunk
    title: str = ""
    previous: str = ""  # the preceding chunk's text (tail), for pronouns and aliases


@dataclass
class ChunkExtraction:
    """The graph facts of one chunk, or why there are none."""

    chunk_id: str
    doc_id: str
    entities: list[Entity] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    propositions: list[Proposition] = field(default_factory=list)
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None


def build_messages(ctx: ChunkContext) -> list[dict[str, str]]:
    """The single-call extraction prompt (also the format of distillation data)."""
    previous = ctx.previous[-400:].strip()
    context = prompts.EXTRACTION_CONTEXT.format(previous=previous) if previous else ""
    user = prompts.EXTRACTION_USER.format(title=ctx.title or "(untitled)", context=context,
                                          text=ctx.chunk.text)
    return [{"role": "system", "content": prompts.EXTRACTION_SYSTEM},
            {"role": "user", "content": prompts.EXTRACTION_EXAMPLE_USER},
            {"role": "assistant", "content": prompts.EXTRACTION_EXAMPLE_OUTPUT},
            {"role": "user", "content": user}]


def parse_chunk_graph(text: str) -> ChunkGraph:
    """Validate model output; raises `ValidationError` with what is wrong."""
    return ChunkGraph.model_validate_json(text)


def _clean(s: str, limit: int = MAX_NAME) -> str:
    return " ".join(s.split()).strip(" .,;:")[:limit]


def to_records(graph: ChunkGraph, chunk: Chunk) -> ChunkExtraction:
    """Turn validated output into graph records with provenance to `chunk`."""
    out = ChunkExtraction(chunk.id, chunk.doc_id)
    entities: dict[str, Entity] = {}

    def add_entity(name: str, type_: str = "", description: str = "") -> str | None:
        name = _clean(name)
        if not normalise_name(name):
            return None
        eid = entity_id(name)
        known = entities.get(eid)
        if known is None or (not known.type and type_) or (not known.description and description):
            entities[eid] = Entity(
                id=eid, name=known.name if known else name,
                type=(known.type if known and known.type else _clean(type_)),
                description=(known.description if known and known.description
                             else _clean(description, MAX_DESCRIPTION)),
            )
        return eid

    for e in graph.entities[:MAX_ENTITIES]:
        add_entity(e.name, e.type, e.description)
    props = [_clean(p, MAX_DESCRIPTION) for p in graph.propositions[:MAX_PROPOSITIONS]]
    prop_entities: dict[int, set[str]] = {i: set() for i in range(len(props))}
    seen: set[tuple[str, str, str]] = set()
    for t in graph.triples[:MAX_TRIPLES]:
        predicate = _clean(t.predicate).lower()
        s_id, o_id = add_entity(t.subject), add_entity(t.object)
        if not predicate or s_id is None or o_id is None or s_id == o_id:
            continue
        if (s_id, predicate, o_id) in seen:
            continue
        seen.add((s_id, predicate, o_id))
        out.relations.append(Relation(subject_id=s_id, predicate=predicate, object_id=o_id,
                                      chunk_id=chunk.id, doc_id=chunk.doc_id))
        if 0 <= t.p < len(props):
            prop_entities[t.p].update((s_id, o_id))
    for i, text in enumerate(props):
        if not text:
            continue
        norm = f" {normalise_name(text)} "
        named = {eid for eid, e in entities.items() if f" {normalise_name(e.name)} " in norm}
        ids = tuple(sorted(named | prop_entities[i]))
        out.propositions.append(Proposition(id=Proposition.make_id(chunk.id, text), text=text,
                                            chunk_id=chunk.id, doc_id=chunk.doc_id,
                                            entity_ids=ids))
    out.entities = list(entities.values())
    out.mentions = [Mention(entity_id=eid, chunk_id=chunk.id) for eid in entities]
    return out


class ChunkExtractor:
    """Extracts each chunk's graph in one schema-constrained LLM call."""

    def __init__(self, llm: ChatModel, *, concurrency: int = 1,
                 max_tokens: int | None = None) -> None:
        self.llm = llm
        self.concurrency = concurrency
        self.max_tokens = max_tokens

    def request(self, ctx: ChunkContext) -> CompletionRequest:
        return CompletionRequest.of(build_messages(ctx), json_schema=CHUNK_GRAPH_SCHEMA,
                                    max_tokens=self.max_tokens, temperature=0.0)

    async def arun(self, contexts: Sequence[ChunkContext]) -> list[ChunkExtraction]:
        replies = await acomplete_many(self.llm, [self.request(c) for c in contexts],
                                       self.concurrency)
        return [self._result(ctx, reply) for ctx, reply in zip(contexts, replies, strict=True)]

    def run(self, contexts: Sequence[ChunkContext]) -> list[ChunkExtraction]:
        return asyncio.run(self.arun(contexts))

    @staticmethod
    def _result(ctx: ChunkContext, reply: Completion | BaseException) -> ChunkExtraction:
        chunk = ctx.chunk
        if isinstance(reply, BaseException):
            reason = reply.message if isinstance(reply, KgragError) else repr(reply)
            return ChunkExtraction(chunk.id, chunk.doc_id, error=f"llm: {reason}"[:500])
        try:
            graph = parse_chunk_graph(reply.text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return ChunkExtraction(
                chunk.id, chunk.doc_id, error=f"invalid output at {where}: {first['msg']}; "
                f"output began {reply.text[:120]!r}",
                prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        result = to_records(graph, chunk)
        if not result.entities and not result.relations:
            # Valid JSON, no facts: a model failure to report, not a fact-free chunk to store.
            result.error = (f"empty graph: the model returned {len(graph.entities)} entities and "
                            f"{len(graph.triples)} triples, none usable; output began "
                            f"{reply.text[:120]!r}")
        result.prompt_tokens = reply.prompt_tokens
        result.completion_tokens = reply.completion_tokens
        result.cached = reply.cached
        return result
