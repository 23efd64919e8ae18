"""The knowledge-graph stages of ingest: extract -> judge -> resolve -> write.

One LLM call per chunk (Distill-SynthKG), a judge that drops unsupported triples
(GraphJudger), entity resolution against what the graph already holds, then facts with
provenance to the graph and entity / proposition vectors to their indexes (mutual
indexing: chunks, entities and propositions point at each other).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from core.llm.base import Usage
from core.models import Chunk, Document, Entity
from flows.components import ENTITY_INDEX, FACT_INDEX, PROPOSITION_INDEX, Components
from flows.progress import report
from flows.runners import extract_fanned_out, fans_out
from flows.summary import IngestSummary, Problem
from kg.extract import ChunkContext, ChunkExtraction, ChunkExtractor
from kg.judge import CheckerJudge, GroundingJudge, LLMTripleJudge, TripleJudge, judge
from kg.resolve import (
    ChainResolver,
    EmbeddingResolver,
    FuzzyResolver,
    NameBlocks,
    ResolvedFacts,
    apply_resolution,
)


def entity_text(e: Entity) -> str:
    return f"{e.name}: {e.description}" if e.description else e.name


@task(name="extract", cache_policy=NO_CACHE)
def extract_chunks(extractor: ChunkExtractor, contexts: Sequence[ChunkContext]
                   ) -> list[ChunkExtraction]:
    results: list[ChunkExtraction] = []
    step = max(1, extractor.concurrency)
    for i in range(0, len(contexts), step):  # small steps so the progress bar moves
        results += asyncio.run(extractor.arun(contexts[i:i + step]))
        report("chunks extracted", len(results), len(contexts))
    return results


@task(name="write-facts", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def write_facts(c: Components, facts: ResolvedFacts) -> None:
    """Facts to the graph, vectors to the entity / proposition indexes (saved at the
    ingest flow's next checkpoint)."""
    g = c.graph
    g.upsert_entities(facts.entities)
    g.upsert_mentions(facts.mentions)
    g.upsert_relations(facts.relations)
    g.upsert_propositions(facts.propositions)
    if facts.entities:
        index = c.index(ENTITY_INDEX)
        index.add([e.id for e in facts.entities],
                  c.embedder.embed([entity_text(e) for e in facts.entities]))
    if facts.propositions:
        index = c.index(PROPOSITION_INDEX)
        index.add([p.id for p in facts.propositions],
                  c.embedder.embed([p.text for p in facts.propositions]))
    if facts.relations:
        write_fact_vectors(c, facts)


def fact_vector_id(subject_id: str, object_id: str, chunk_id: str) -> str:
    """`fact:<subject>:<object>:<chunk>`: PageRank seeds both ends of a matched fact, and
    a delete finds a chunk's facts by the last part."""
    return f"fact:{subject_id}:{object_id}:{chunk_id}"


def write_fact_vectors(c: Components, facts: ResolvedFacts) -> None:
    """"subject predicate object" vectors for query-to-fact linking (HippoRAG 2)."""
    names = {e.id: e.name for e in facts.entities}
    missing = {x for r in facts.relations for x in (r.subject_id, r.object_id)} - set(names)
    names.update({e.id: e.name for e in c.graph.get_entities(sorted(missing))})
    rows = {fact_vector_id(r.subject_id, r.object_id, r.chunk_id):
            f"{names.get(r.subject_id, '')} {r.predicate} {names.get(r.object_id, '')}"
            for r in facts.relations}
    c.index(FACT_INDEX).add(list(rows), c.embedder.embed(list(rows.values())))


class GraphBuilder:
    """Runs the KG stages for one batch of documents and their chunks."""

    def __init__(self, c: Components) -> None:
        self.c = c
        s = c.settings
        concurrency = s.llm_concurrency if s.llm_backend == "openai" else 1
        self.extractor = ChunkExtractor(c.llm, concurrency=concurrency, output=s.extract_format)
        self.remote_usage = Usage()  # spent by task-runner workers (task_runner=dask)
        self.judge: TripleJudge | None = None
        if s.judge == "grounding":
            self.judge = GroundingJudge(c.embedder.embed, s.judge_threshold)
        elif s.judge == "checker":
            from retrieval.checker import CrossEncoderGroundingChecker

            self.judge = CheckerJudge(CrossEncoderGroundingChecker.load(s), s.judge_threshold)
        elif s.judge == "llm":
            self.judge = LLMTripleJudge(c.llm, s.judge_threshold)
        self.resolver = ChainResolver([
            FuzzyResolver(s.resolve_fuzzy_threshold),
            EmbeddingResolver(c.embedder.embed, s.resolve_embedding_threshold),
        ])
        self.blocks: NameBlocks | None = None  # the graph's names, loaded on first use

    def usage(self) -> Usage:
        usage = getattr(self.c.llm, "usage", None)
        local = Usage(**vars(usage)) if usage is not None else Usage()
        return local + self.remote_usage

    def extract(self, contexts: Sequence[ChunkContext]) -> list[ChunkExtraction]:
        """In this process, or fanned out to the task runner's workers (flows.runners)."""
        if not fans_out(self.c.settings):
            return extract_chunks(self.extractor, contexts)
        results, spent = extract_fanned_out(self.c.settings, contexts)
        self.remote_usage += spent
        return results

    def contexts(self, docs: Sequence[Document], chunks: Sequence[Chunk],
                 names: Mapping[str, tuple[str, ...]]) -> list[ChunkContext]:
        """Each chunk with its title, the preceding chunk and its mention layer's entity
        names (`names`, by chunk id: names the triple checks never split)."""
        titles = {d.id: d.title for d in docs}
        previous: dict[str, str] = {}
        out = []
        for ch in sorted(chunks, key=lambda x: (x.doc_id, x.position)):
            out.append(ChunkContext(ch, titles.get(ch.doc_id, ""), previous.get(ch.doc_id, ""),
                                    names.get(ch.id, ())))
            previous[ch.doc_id] = ch.text
        return out

    def name_blocks(self) -> NameBlocks:
        """Every entity name of the graph, blocked by word (read once per ingest run: the
        run holds the writer lock, and `remember` adds what it writes)."""
        if self.blocks is None:
            self.blocks = NameBlocks()
            self.blocks.add(self.c.graph.entity_names())
        return self.blocks

    def remember(self, entities: Sequence[Entity]) -> None:
        self.name_blocks().add([(e.id, n) for e in entities for n in (e.name, *e.aliases)])

    def known_entities(self, new: Sequence[Entity]) -> list[Entity]:
        """Entities already in the graph that new ones might be, from the whole graph: the
        same id, the embedding index's nearest names (paraphrases) and the names that
        share a rare word (spelling variants; `NameBlocks`)."""
        s = self.c.settings
        ids = {e.id for e in new}
        index = self.c.index(ENTITY_INDEX)
        if len(index) and s.resolve_nearest:
            hits = index.search(self.c.embedder.embed([e.name for e in new]),
                                s.resolve_nearest)
            ids |= {h.id for row in hits for h in row}
        if s.resolve_blocked:
            blocks = self.name_blocks()
            for e in new:
                ids.update(blocks.candidates(e.name, s.resolve_blocked))
        return self.c.graph.get_entities(sorted(ids))

    def build(self, docs: Sequence[Document], chunks: Sequence[Chunk], s: IngestSummary,
              names: Mapping[str, tuple[str, ...]] | None = None) -> None:
        """Extract, judge, resolve and write one batch; `names`: the mention layer's
        entity names by chunk id (none when the layer is off)."""
        t = time.perf_counter()
        results = self.extract(self.contexts(docs, chunks, names or {}))
        s.add_time("extract", time.perf_counter() - t)
        t = time.perf_counter()
        by_chunk = {ch.id: ch for ch in chunks}
        entities: dict[str, Entity] = {}
        mentions, relations, propositions = [], [], []
        for r in results:
            for reason, n in r.drops.items():
                s.triples_dropped[reason] = s.triples_dropped.get(reason, 0) + n
            if r.failed:
                s.failed_chunks.append(Problem(r.chunk_id, r.error or "", "extraction"))
                continue
            for e in r.entities:
                entities.setdefault(e.id, e)
            mentions += r.mentions
            propositions += r.propositions
            if self.judge is None:
                relations += r.relations
                continue
            verdict = judge(self.judge, by_chunk[r.chunk_id], r.relations, r.entities)
            relations += verdict.kept
            s.relations_dropped += len(verdict.dropped)
        s.add_time("judge", time.perf_counter() - t)
        if not entities:
            return
        t = time.perf_counter()
        new = list(entities.values())
        known = self.known_entities(new)
        resolution = self.resolver.resolve(new, [k for k in known if k.id not in entities])
        facts = apply_resolution(resolution, new, known, mentions, relations, propositions)
        s.add_time("resolve", time.perf_counter() - t)
        t = time.perf_counter()
        write_facts(self.c, facts)
        self.remember(facts.entities)
        s.add_time("write facts", time.perf_counter() - t)
        s.entities += len(facts.entities)
        s.relations_kept += len(facts.relations)
        s.propositions += len(facts.propositions)
