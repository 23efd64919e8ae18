"""One LLM call per chunk: the chunk's facts as triples, in one of two output formats.

- `lines` (the default): one `subject | predicate | object` line per fact, decoded without a
  grammar (about 12 tokens a fact) and parsed line by line (kg/triples.py); a reply cut off
  at max_tokens keeps its complete lines; the local backend stops a reply at its first
  line that is not a triple (prose, a copy of the passage) or at its third repeated line.
  Only a reply with no usable triple is asked again, once, under a GBNF grammar of the
  same format (llama.cpp; vLLM's guided_grammar on a server).
- `json`: entities, propositions and triples (the Distill-SynthKG format, and what the
  distillation teacher writes), constrained by a JSON schema (llama.cpp grammar / vLLM
  guided decoding) and validated with pydantic.

Either way the triples go through `kg.triples.TripleFilter` (coordinated ends split, ends
not in the passage or too long dropped, each drop counted by reason), and a chunk whose call
fails is recorded as a failed chunk with its reason — never silently empty.

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
from kg.triples import MALFORMED, RawTriple, TripleFilter, canonical_predicate, parse_lines

MAX_ENTITIES = 25
MAX_PROPOSITIONS = 15
MAX_TRIPLES = 25
MAX_NAME = 100
MAX_DESCRIPTION = 300
#: Output budget of the lines format: ~25 facts of ~12 tokens. Not a retry budget: a reply
#: that reaches it keeps its complete lines.
LINES_MAX_TOKENS = 320
FORMATS = ("lines", "json")
#: A 0.5B model sometimes loops over the facts it already wrote until max_tokens; the local
#: backend stops the reply at the third repeated line (the lines before it are kept).
REPEATS_BEFORE_STOP = 3
#: The lines format as a GBNF grammar: the constrained second try of a reply that was not
#: in the format (prose, a copy of the passage). Three non-empty fields a line.
LINES_GRAMMAR = r"""
root  ::= line+
line  ::= field " | " field " | " field "\n"
field ::= [^|\n ] [^|\n]{0,80}
"""


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
    mentions: tuple[str, ...] = ()  # names the passage holds whole (spaCy): never split


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
    calls: int = 1
    drops: dict[str, int] = field(default_factory=dict)  # triples dropped, by reason

    @property
    def failed(self) -> bool:
        return self.error is not None


def build_messages(ctx: ChunkContext, output: str = "json") -> list[dict[str, str]]:
    """The single-call extraction prompt in format `output` ("json" is also the format of
    distillation data). The instructions and the worked example come first and never
    change, so a local model reuses their KV cache from one chunk to the next."""
    previous = ctx.previous[-400:].strip()
    context = prompts.EXTRACTION_CONTEXT.format(previous=previous) if previous else ""
    if output == "lines":
        system, example, answer, template = (
            prompts.EXTRACTION_LINES_SYSTEM, prompts.EXTRACTION_LINES_EXAMPLE_USER,
            prompts.EXTRACTION_LINES_EXAMPLE_OUTPUT, prompts.EXTRACTION_LINES_USER)
        if not ctx.title:  # "(untitled)" became the subject of every triple (WebNLG)
            template = template.removeprefix("Document: {title}\n")
    else:
        system, example, answer, template = (
            prompts.EXTRACTION_SYSTEM, prompts.EXTRACTION_EXAMPLE_USER,
            prompts.EXTRACTION_EXAMPLE_OUTPUT, prompts.EXTRACTION_USER)
    user = template.format(title=ctx.title or "(untitled)", context=context, text=ctx.chunk.text)
    return [{"role": "system", "content": system},
            {"role": "user", "content": example},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": user}]


def parse_chunk_graph(text: str) -> ChunkGraph:
    """Validate model output; raises `ValidationError` with what is wrong."""
    return ChunkGraph.model_validate_json(text)


def _clean(s: str, limit: int = MAX_NAME) -> str:
    return " ".join(s.split()).strip(" .,;:")[:limit]


def to_records(graph: ChunkGraph, chunk: Chunk, mentions: Sequence[str] = (),
               malformed: int = 0) -> ChunkExtraction:
    """Turn validated output into graph records with provenance to `chunk`; triples go
    through `TripleFilter` (drops counted in `drops`, with `malformed` lines)."""
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

    checks = TripleFilter(chunk.text, mentions)
    for e in graph.entities[:MAX_ENTITIES]:
        if checks.found(e.name):  # a listed name the passage does not hold is no entity of it
            add_entity(e.name, e.type, e.description)
    props = [_clean(p, MAX_DESCRIPTION) for p in graph.propositions[:MAX_PROPOSITIONS]]
    prop_entities: dict[int, set[str]] = {i: set() for i in range(len(props))}
    raw = [RawTriple(_clean(t.subject), _clean(t.predicate).lower(), _clean(t.object), t.p)
           for t in graph.triples[:MAX_TRIPLES]]
    for t in checks.apply(raw):
        s_id, o_id = add_entity(t.subject), add_entity(t.object)
        if s_id is None or o_id is None:
            continue
        out.relations.append(Relation(subject_id=s_id, predicate=canonical_predicate(t.predicate),
                                      raw_predicate=t.predicate, object_id=o_id,
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
    if malformed:
        checks.drops[MALFORMED] += malformed
    out.drops = dict(checks.drops)
    return out


def lines_graph(text: str) -> tuple[ChunkGraph, int]:
    """A lines-format reply as a `ChunkGraph` (triples only), and its malformed lines."""
    triples, malformed = parse_lines(text)
    graph = ChunkGraph(triples=[ExtractedTriple(subject=t.subject, predicate=t.predicate,
                                                object=t.object) for t in triples])
    return graph, malformed


class ChunkExtractor:
    """Extracts each chunk's graph in one LLM call (`output`: "lines" or "json")."""

    def __init__(self, llm: ChatModel, *, concurrency: int = 1,
                 max_tokens: int | None = None, output: str = "lines") -> None:
        if output not in FORMATS:
            raise ValueError(f"unknown extraction format {output!r}; use one of {FORMATS}")
        self.llm = llm
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.output = output

    def request(self, ctx: ChunkContext, output: str | None = None) -> CompletionRequest:
        output = output or self.output
        if output in ("lines", "lines-grammar"):
            request = CompletionRequest.of(build_messages(ctx, "lines"),
                                           max_tokens=self.max_tokens or LINES_MAX_TOKENS,
                                           temperature=0.0, stop=["\n\n"])
            if output == "lines-grammar":  # the grammar holds the format: no prose guard
                return request.with_(stop_after_repeats=REPEATS_BEFORE_STOP,
                                     grammar=LINES_GRAMMAR)
            return request.with_(stop_after_repeats=REPEATS_BEFORE_STOP, line_marker="|")
        return CompletionRequest.of(build_messages(ctx, "json"), json_schema=CHUNK_GRAPH_SCHEMA,
                                    max_tokens=self.max_tokens, temperature=0.0)

    async def arun(self, contexts: Sequence[ChunkContext]) -> list[ChunkExtraction]:
        replies = await acomplete_many(self.llm, [self.request(c) for c in contexts],
                                       self.concurrency)
        results = [self._result(ctx, reply, self.output)
                   for ctx, reply in zip(contexts, replies, strict=True)]
        if self.output == "lines":  # a reply with no triple at all: once more, constrained
            again = [i for i, r in enumerate(results)
                     if r.error is not None and not r.error.startswith("llm")]
            if again:
                retried = await acomplete_many(
                    self.llm, [self.request(contexts[i], "lines-grammar") for i in again],
                    self.concurrency)
                for i, reply in zip(again, retried, strict=True):
                    first, second = results[i], self._result(contexts[i], reply, "lines")
                    second.calls = 2
                    second.prompt_tokens += first.prompt_tokens
                    second.completion_tokens += first.completion_tokens
                    results[i] = second
        return results

    def run(self, contexts: Sequence[ChunkContext]) -> list[ChunkExtraction]:
        return asyncio.run(self.arun(contexts))

    @staticmethod
    def _result(ctx: ChunkContext, reply: Completion | BaseException,
                output: str) -> ChunkExtraction:
        chunk = ctx.chunk
        if isinstance(reply, BaseException):
            reason = reply.message if isinstance(reply, KgragError) else repr(reply)
            return ChunkExtraction(chunk.id, chunk.doc_id, error=f"llm: {reason}"[:500])
        malformed = 0
        try:
            if output == "lines":
                graph, malformed = lines_graph(reply.text)
            else:
                graph = parse_chunk_graph(reply.text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return ChunkExtraction(
                chunk.id, chunk.doc_id, error=f"invalid output at {where}: {first['msg']}; "
                f"output began {reply.text[:120]!r}",
                prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        result = to_records(graph, chunk, ctx.mentions, malformed)
        if not result.entities and not result.relations:
            # No usable fact: a model failure to report, not a fact-free chunk to store.
            dropped = ", ".join(f"{n} {why}" for why, n in sorted(result.drops.items()))
            result.error = (f"empty graph: the model returned {len(graph.entities)} entities and "
                            f"{len(graph.triples)} triples, none usable"
                            f"{f' ({dropped})' if dropped else ''}; output began "
                            f"{reply.text[:120]!r}")
        result.prompt_tokens = reply.prompt_tokens
        result.completion_tokens = reply.completion_tokens
        result.cached = reply.cached
        return result
