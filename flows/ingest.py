"""`ingest_corpus`: files in; a lexical graph, a knowledge graph and vector indexes out.

    per window of 512 documents read (the corpus is streamed, never held whole):
    load -> clean / dedup / filter -> plan (new, changed, unchanged) -> per batch:
    chunk -> embed -> write chunks + vectors -> mention layer (spaCy entities, mention
    counts, synonym edges: no LLM call) -> extract (1 LLM call / chunk) -> judge
    -> resolve entities -> write facts + entity / proposition vectors; and every
    `checkpoint_seconds`: save the vector indexes, mark finished documents done

Incremental and resumable: a document is marked done (its sha256 written on its Document
node) only after everything of it has landed and the indexes holding its vectors are
saved, so unchanged documents are skipped, changed
ones replace their old chunks and facts, and a killed run re-done ends in the same state
as an uninterrupted one, with no duplicates (every write is an idempotent MERGE).

    >>> from flows.ingest import ingest_corpus
    >>> summary = ingest_corpus(["docs/"])          # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.models import Chunk, Document
from core.protocols import DocumentState
from core.settings import Settings, get_settings
from core.writer_lock import writer_lock
from flows.components import CHUNK_INDEX, ENTITY_INDEX, Components
from flows.graph_build import GraphBuilder
from flows.progress import report
from flows.runners import TaskRunnerFromSettings
from flows.summary import IngestSummary, Problem, save_run_summary
from ingest.clean import DocumentCleaner
from ingest.config import IngestConfig
from ingest.records import LoadResult


def ingest_config(settings: Settings, text_field: str = "text", id_field: str = "id",
                  title_field: str = "title") -> IngestConfig:
    off: dict[str, Any] = {} if settings.quality_filter else {
        "max_symbol_word_ratio": 1.0, "min_alpha_word_fraction": 0.0,
        "min_punctuated_line_fraction": 0.0, "max_duplicate_line_fraction": 1.0,
        "max_duplicate_line_char_fraction": 1.0}
    return IngestConfig(
        **off,
        max_file_bytes=int(settings.max_file_mb * 1024 * 1024),
        text_field=text_field, id_field=id_field, title_field=title_field,
        min_words=settings.min_words,
        near_duplicate_threshold=settings.near_duplicate_threshold,
        chunk_size_tokens=settings.chunk_size_tokens,
        chunk_overlap_tokens=min(settings.chunk_overlap_tokens,
                                 settings.chunk_size_tokens // 2),
    )


@dataclass
class Plan:
    """Which documents need work.

    `todo`: to (re)write, in order. `stale`: placeholders a killed run left (no sha256):
    removed before they are written again. `replaced`: changed documents; their old
    chunks stay searchable until the new version is written, then go. `retry`: unchanged
    documents with chunks whose extraction failed (chunk ids), extracted again.
    """

    todo: list[Document] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    replaced: set[str] = field(default_factory=set)
    retry: dict[str, tuple[str, ...]] = field(default_factory=dict)
    new: int = 0
    changed: int = 0
    resumed: int = 0
    unchanged: int = 0


def plan_changes(docs: Sequence[Document], stored: dict[str, DocumentState],
                 retry_failed: bool = True) -> Plan:
    """Compare with what the store holds: same sha256 -> skip (or retry its failed chunks);
    other -> replace; none (a placeholder) -> remove and redo."""
    plan = Plan()
    for d in docs:
        state = stored.get(d.id)
        if state is None:
            plan.new += 1
        elif state.sha256 == d.sha256:
            plan.unchanged += 1
            if retry_failed and state.retry_chunks:
                plan.retry[d.id] = state.retry_chunks
            continue
        elif state.sha256:
            plan.changed += 1
            plan.replaced.add(d.id)
        else:
            plan.resumed += 1
            plan.stale.append(d.id)
        plan.todo.append(d)
    return plan


# ------------------------------------------------------------------------------ tasks


def load_stream(sources: Sequence[str], config: IngestConfig, s: IngestSummary
                ) -> Iterator[list[Document]]:
    """The corpus in windows of `LOAD_WINDOW` loaded, cleaned, deduplicated documents:
    only a window's text is held at a time (dedup keeps a hash and a MinHash per document),
    so memory does not grow with the size of the corpus."""
    from ingest.loaders import CorpusLoader

    cleaner = DocumentCleaner(config)  # one for the whole run: dedup spans the windows
    results = CorpusLoader(config).run(list(sources))
    while True:
        t = time.perf_counter()
        docs, problems = load_window(results, LOAD_WINDOW)
        s.add_time("load", time.perf_counter() - t)
        s.documents_seen += len(docs) + len(problems)
        s.failed += problems
        if not docs and not problems:
            return
        t = time.perf_counter()
        kept, dropped = clean_documents(cleaner, docs)
        s.add_time("clean", time.perf_counter() - t)
        s.dropped += dropped
        if kept:
            yield kept


#: Documents read and cleaned at a time (their text is what ingest holds in memory).
LOAD_WINDOW = 512


def load_window(results: Iterator[LoadResult], size: int) -> tuple[list[Document], list[Problem]]:
    docs: list[Document] = []
    problems: list[Problem] = []
    for result in results:
        if result.document is not None:
            docs.append(result.document)
        elif result.error is not None:
            problems.append(Problem(result.error.source, result.error.reason,
                                    result.error.kind))
        if len(docs) + len(problems) >= size:
            break
    return docs, problems


def clean_documents(cleaner: DocumentCleaner, docs: Sequence[Document]
                    ) -> tuple[list[Document], list[Problem]]:
    result = cleaner.run(docs)
    dropped = [Problem(f"{d.source} ({d.doc_id})", d.detail or d.reason, d.reason)
               for d in result.dropped]
    return result.kept, dropped


@task(name="remove-stale", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def remove_documents(c: Components, doc_ids: Sequence[str]) -> int:
    """Delete documents' chunks, facts and vectors (graph first: it is the record)."""
    from flows.delete import remove_from_store_and_indexes

    return int(remove_from_store_and_indexes(c, list(doc_ids))["chunks"])


@task(name="remove-old-versions", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def remove_old_chunks(c: Components, old: dict[str, list[str]], chunks: Sequence[Chunk]
                      ) -> int:
    """Once the new versions of changed documents are written, remove their old chunks
    (those the new version does not have again) with their facts and vectors."""
    from flows.delete import remove_chunks_from_store_and_indexes

    new = {ch.id for ch in chunks}
    gone = [cid for ids in old.values() for cid in ids if cid not in new]
    return int(remove_chunks_from_store_and_indexes(c, gone)["chunks"]) if gone else 0


@task(name="chunk", cache_policy=NO_CACHE)
def chunk_documents(docs: Sequence[Document], config: IngestConfig) -> list[Chunk]:
    from ingest.chunking import SentenceChunker

    return SentenceChunker(config).run(docs)


@task(name="embed-and-write-chunks", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def write_chunks(c: Components, chunks: Sequence[Chunk]) -> None:
    """Chunks to the graph (PART_OF, NEXT) and their vectors to the chunk index (saved at
    the next checkpoint)."""
    c.graph.upsert_chunks(chunks)
    index = c.index(CHUNK_INDEX)
    index.add([ch.id for ch in chunks], c.embedder.embed([ch.text for ch in chunks]))


@task(name="mention-layer", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def write_mentions(c: Components, chunks: Sequence[Chunk], s: IngestSummary
                   ) -> dict[str, tuple[str, ...]]:
    """The mention layer (no LLM call): spaCy entities of each chunk, MENTIONED_IN with
    counts, and SYNONYM edges from the new entities' names to every known entity. Returns
    each chunk's entity names, for the extractor's triple checks (no second spaCy pass)."""
    from kg.mentions import MentionExtractor, SynonymLinker

    layer = MentionExtractor(c.text_analyser).run(chunks)
    s.failed_chunks += [Problem(cid, reason, "ner") for cid, reason in layer.failed]
    c.graph.upsert_entities(layer.entities, keep_existing=True)
    c.graph.upsert_mentions(layer.mentions)
    def embed_names(names: list[str]) -> np.ndarray:  # a few tokens each: big batches
        return c.embedder.embed(names, batch_size=128)

    linker = SynonymLinker(embed_names, c.index(ENTITY_INDEX),
                           threshold=c.settings.synonym_threshold)
    synonyms = linker.link(layer.entities)
    c.graph.upsert_synonyms(synonyms)
    s.mention_entities += len(layer.entities)
    s.mentions += len(layer.mentions)
    s.synonyms += len(synonyms)
    name_of = {e.id: e.name for e in layer.entities}
    by_chunk: dict[str, list[str]] = {}
    for m in layer.mentions:
        by_chunk.setdefault(m.chunk_id, []).append(name_of[m.entity_id])
    return {cid: tuple(names) for cid, names in by_chunk.items()}


@task(name="mark-documents-done", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def mark_done(c: Components, docs: Sequence[Document],
              retry: dict[str, list[str]] | None = None) -> None:
    """The checkpoint: save the vector indexes, then mark the documents done (their sha256
    on the Document node, and the chunks whose extraction failed, for the next run to
    retry). Until then a re-run redoes them, so nothing is half-kept."""
    c.save_indexes()
    c.graph.upsert_documents(docs, retry)


@dataclass
class Pending:
    """Documents finished since the last checkpoint, and their failed chunks."""

    docs: list[Document] = field(default_factory=list)
    retry: dict[str, list[str]] = field(default_factory=dict)

    def add(self, docs: Sequence[Document], chunks: Sequence[Chunk],
            failed: Sequence[Problem]) -> None:
        self.docs += docs
        doc_of = {ch.id: ch.doc_id for ch in chunks}
        for p in failed:
            if p.kind == "extraction" and p.where in doc_of:
                self.retry.setdefault(doc_of[p.where], []).append(p.where)


def checkpoint(c: Components, pending: Pending, s: IngestSummary) -> None:
    """Make the finished batches durable; empties `pending`."""
    if not pending.docs:
        return
    t = time.perf_counter()
    mark_done(c, list(pending.docs), dict(pending.retry))
    s.add_time("checkpoint", time.perf_counter() - t)
    pending.docs.clear()
    pending.retry.clear()


def write_batch(c: Components, docs: Sequence[Document], chunks: Sequence[Chunk],
                builder: GraphBuilder | None, s: IngestSummary) -> None:
    """Chunks and their vectors, the mention layer, then the LLM fact layer."""
    t = time.perf_counter()
    write_chunks(c, chunks)
    s.add_time("embed + write chunks", time.perf_counter() - t)
    s.chunks += len(chunks)
    mentioned: dict[str, tuple[str, ...]] = {}
    if c.settings.mention_layer:
        t = time.perf_counter()
        mentioned = write_mentions(c, chunks, s)
        s.add_time("mention layer", time.perf_counter() - t)
    if builder is not None:
        builder.build(docs, chunks, s, mentioned)


def retry_failed_chunks(c: Components, docs: Sequence[Document],
                        retry: dict[str, tuple[str, ...]], builder: GraphBuilder,
                        s: IngestSummary, pending: Pending) -> None:
    """Extract again the chunks an earlier run could not (malformed or cut-off LLM output,
    a server that was down); what fails again stays listed for the next run."""
    chunks = c.graph.get_chunks([cid for d in docs for cid in retry[d.id]])
    s.retried_chunks += len(chunks)
    failed_before = len(s.failed_chunks)
    names = write_mentions(c, chunks, s) if c.settings.mention_layer else {}
    builder.build(docs, chunks, s, names)
    pending.add(docs, chunks, s.failed_chunks[failed_before:])
    checkpoint(c, pending, s)


def batches(items: Sequence[Document], size: int) -> Iterator[list[Document]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


# ------------------------------------------------------------------------------ flow


@flow(name="ingest_corpus", log_prints=False, persist_result=False,
      task_runner=TaskRunnerFromSettings())
def ingest_corpus(
    sources: list[str],
    extract: bool | None = None,
    text_field: str = "text",
    id_field: str = "id",
    title_field: str = "title",
    remove_missing: bool | None = None,
) -> dict[str, Any]:
    """Ingest files, folders or globs. Returns the run summary (also a markdown artifact).

    `extract` overrides the `extract` setting, `remove_missing` the `remove_missing_files`
    setting (None: use the setting): documents read from files under `sources` that are
    gone are deleted after the ingest.
    """
    log = get_run_logger()
    settings = get_settings()
    do_extract = settings.extract if extract is None else extract
    config = ingest_config(settings, text_field, id_field, title_field)
    c = Components.from_settings(settings)
    s = IngestSummary(sources=list(sources))
    t_start = time.perf_counter()
    try:
        # One writer per data dir: a second one waits here (the CLI takes the lock first,
        # with or without waiting, so this is free under it).
        with writer_lock(settings, "ingest", notify=log.info):
            run_stages(c, config, sources, do_extract, s, settings.remove_missing_files
                       if remove_missing is None else remove_missing)
    except BaseException as exc:
        s.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        s.seconds = round(time.perf_counter() - t_start, 3)
        c.close()
        save_run_summary(s, settings.runs_dir)
    try:
        create_markdown_artifact(markdown=s.to_markdown(), key="ingest-summary",
                                 description="ingest_corpus run summary")
    except Exception as exc:  # an artifact is a courtesy; the summary is returned anyway
        log.warning("could not store the summary artifact: %s", exc)
    log.info("ingest done: %d new, %d changed, %d unchanged, %d dropped, %d failed, "
             "%d chunks", s.new, s.changed, s.unchanged, len(s.dropped), len(s.failed),
             s.chunks)
    return s.to_json()


def remove_missing_files(c: Components, sources: Sequence[str], s: IngestSummary) -> None:
    """Delete the documents read from files under `sources` that are gone (a watched
    folder whose files were deleted); each is listed in the summary's `removed`."""
    from flows.delete import missing_files, remove_from_store_and_indexes

    gone = missing_files(c.graph.list_documents(), sources)
    if gone:
        t = time.perf_counter()
        report = remove_from_store_and_indexes(c, [d.id for d in gone])
        s.chunks_removed += report["chunks"]
        s.removed += [Problem(d.path, f"its file is gone (document {d.id})", "removed")
                      for d in gone]
        s.add_time("remove missing files", time.perf_counter() - t)


def run_stages(c: Components, config: IngestConfig, sources: Sequence[str],
               do_extract: bool, s: IngestSummary, remove_missing: bool = False) -> None:
    from flows.delete import recover_interrupted_delete

    if do_extract:
        # What extraction needs is checked before any work: a missing local model is
        # installed now (or the run stops with how to install it), a server must answer.
        c.llm  # noqa: B018
        if c.settings.llm_backend == "openai":
            from core.llm.factory import require_llm_server

            require_llm_server(c.settings)
    recover_interrupted_delete(c)
    stored = c.graph.document_states()
    builder: GraphBuilder | None = None
    usage_before = None
    retry_docs: list[Document] = []
    retry: dict[str, tuple[str, ...]] = {}
    pending = Pending()
    last_checkpoint = time.perf_counter()
    done = 0
    report("documents", 0, 0)  # the total is not known until the corpus has been read
    try:
        for window in load_stream(sources, config, s):
            plan = plan_changes(window, stored, retry_failed=do_extract)
            s.new += plan.new
            s.changed += plan.changed
            s.resumed += plan.resumed
            s.unchanged += plan.unchanged
            retry.update(plan.retry)
            retry_docs += [d for d in window if d.id in plan.retry]
            if plan.stale:
                t = time.perf_counter()
                s.chunks_removed += remove_documents(c, plan.stale)
                s.add_time("remove stale", time.perf_counter() - t)
            if builder is None and do_extract and (plan.todo or plan.retry):
                builder = GraphBuilder(c)
                usage_before = builder.usage()
            for batch in batches(plan.todo, c.settings.ingest_batch_docs):
                old = {d.id: [ch.id for ch in c.graph.chunks_of_document(d.id)]
                       for d in batch if d.id in plan.replaced}
                t = time.perf_counter()
                chunks = chunk_documents(batch, config)
                s.add_time("chunk", time.perf_counter() - t)
                failed_before = len(s.failed_chunks)
                write_batch(c, batch, chunks, builder, s)
                if old:  # the new versions are written: now the old ones can go
                    t = time.perf_counter()
                    s.chunks_removed += remove_old_chunks(c, old, chunks)
                    s.add_time("remove old versions", time.perf_counter() - t)
                pending.add(batch, chunks, s.failed_chunks[failed_before:])
                if time.perf_counter() - last_checkpoint >= c.settings.checkpoint_seconds:
                    checkpoint(c, pending, s)
                    last_checkpoint = time.perf_counter()
                done += len(batch)
                report("documents", done, 0)
        report("documents", done, done)
        if builder is not None and retry:
            checkpoint(c, pending, s)
            retry_failed_chunks(c, retry_docs, retry, builder, s, pending)
    except Exception:
        # The batches finished before the failing one are whole: keep them. (A kill or
        # Ctrl-C skips this; the re-run then redoes the batches since the last checkpoint.)
        checkpoint(c, pending, s)
        raise
    checkpoint(c, pending, s)
    if remove_missing:
        remove_missing_files(c, sources, s)
    if builder is not None and usage_before is not None:
        s.llm = (builder.usage() - usage_before).as_dict()
