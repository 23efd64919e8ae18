"""`delete_documents`: remove documents and exactly what only they supported — chunks,
facts, propositions, orphaned entities and their vectors — with no LLM call."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from core.protocols import DeleteReport, DocumentInfo
from core.settings import get_settings
from core.writer_lock import writer_lock
from flows.components import CHUNK_INDEX, ENTITY_INDEX, FACT_INDEX, PROPOSITION_INDEX, Components

log = logging.getLogger(__name__)


#: Present while a delete runs: the graph's part lands first, then the vectors. A kill in
#: between leaves vectors of what the graph no longer has, and nothing names them any more
#: (the documents are gone), so the next writer that finds this file reconciles every index
#: with the graph before it starts.
DELETE_JOURNAL = "delete-in-progress"


@contextlib.contextmanager
def delete_journal(c: Components) -> Iterator[None]:
    journal = c.settings.run_dir / DELETE_JOURNAL
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(str(os.getpid()))
    yield
    journal.unlink(missing_ok=True)


def recover_interrupted_delete(c: Components) -> int:
    """If a delete was killed half-way, drop the vectors the graph no longer backs; how
    many. Callers hold the writer lock."""
    journal = c.settings.run_dir / DELETE_JOURNAL
    if not journal.exists():
        return 0
    removed = reconcile_indexes(c)
    log.warning("an earlier delete was interrupted; removed %d vectors of deleted records",
                removed)
    journal.unlink(missing_ok=True)
    return removed


def reconcile_indexes(c: Components) -> int:
    """Remove from every vector index the ids whose record is not in the graph."""
    chunks = set(c.graph.chunk_ids())
    backed = {CHUNK_INDEX: chunks, ENTITY_INDEX: set(c.graph.entity_names()),
              PROPOSITION_INDEX: set(c.graph.proposition_ids())}
    removed = 0
    for name in (CHUNK_INDEX, ENTITY_INDEX, PROPOSITION_INDEX, FACT_INDEX):
        index = c.index(name)
        if name == FACT_INDEX:  # fact vector ids end in their chunk's id
            stale = [i for i in index.ids() if i.rsplit(":", 1)[-1] not in chunks]
        else:
            stale = [i for i in index.ids() if i not in backed[name]]
        if stale:
            index.remove(stale)
            index.save()
            removed += len(stale)
    return removed


def remove_from_store_and_indexes(c: Components, doc_ids: list[str]) -> dict[str, Any]:
    with delete_journal(c):
        return remove_vectors(c, c.graph.delete_documents(doc_ids))


def remove_chunks_from_store_and_indexes(c: Components, chunk_ids: list[str]
                                         ) -> dict[str, Any]:
    """Chunks (an older version's) and what only they supported; documents stay."""
    with delete_journal(c):
        return remove_vectors(c, c.graph.delete_chunks(chunk_ids))


def remove_vectors(c: Components, rep: DeleteReport) -> dict[str, Any]:
    """The vectors of what the graph just deleted (the graph first: it is the record)."""
    for name, ids in ((CHUNK_INDEX, rep.chunk_ids), (ENTITY_INDEX, rep.entity_ids),
                      (PROPOSITION_INDEX, rep.proposition_ids)):
        if ids:
            index = c.index(name)
            index.remove(ids)
            index.save()
    if rep.chunk_ids:  # the fact vectors of the deleted chunks (ids end in the chunk id)
        gone = set(rep.chunk_ids)
        facts = c.index(FACT_INDEX)
        stale = [i for i in facts.ids() if i.rsplit(":", 1)[-1] in gone]
        if stale:
            facts.remove(stale)
            facts.save()
    return asdict(rep)


def resolve_targets(docs: Sequence[DocumentInfo], targets: Sequence[str]
                    ) -> tuple[list[DocumentInfo], list[str]]:
    """The documents `targets` name, and the targets that name none. A target is a
    document id, a file (every document read from it: a JSONL file's records too), a folder
    (every document read from a file under it) or a source exactly as `kgrag docs list`
    shows it."""
    by_id = {d.id: d for d in docs}
    chosen: dict[str, DocumentInfo] = {}
    unmatched = []
    for target in targets:
        if target in by_id:
            found = [by_id[target]]
        else:
            where = Path(target).expanduser().resolve()
            found = [d for d in docs if d.source == target or (
                d.path and Path(d.path).is_relative_to(where))]  # the file itself too
        if not found:
            unmatched.append(target)
        chosen.update((d.id, d) for d in found)
    return list(chosen.values()), unmatched


def missing_files(docs: Sequence[DocumentInfo], sources: Sequence[str]) -> list[DocumentInfo]:
    """Documents read from a file under one of `sources` (folders or files) that is gone."""
    roots = [Path(s).expanduser().resolve() for s in sources if not any(
        ch in s for ch in "*?[")]
    return [d for d in docs if d.path and not Path(d.path).exists() and any(
        Path(d.path).is_relative_to(r) for r in roots)]


@flow(name="delete_documents", persist_result=False)
def delete_documents(doc_ids: list[str]) -> dict[str, Any]:
    """Delete documents named by id, file or folder path, or source (`resolve_targets`);
    targets that name nothing are reported in `not_found`, the documents removed in
    `removed` (id and source)."""
    settings = get_settings()
    c = Components.from_settings(settings)
    try:
        with writer_lock(settings, "delete", notify=get_run_logger().info):
            recover_interrupted_delete(c)
            found, not_found = resolve_targets(c.graph.list_documents(), doc_ids)
            report = remove_from_store_and_indexes(c, [d.id for d in found])
    finally:
        c.close()
    report["not_found"] = not_found
    report["removed"] = [{"id": d.id, "source": d.source} for d in found]
    return report
