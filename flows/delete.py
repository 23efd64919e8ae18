"""`delete_documents`: remove documents and exactly what only they supported — chunks,
facts, propositions, orphaned entities and their vectors — with no LLM call."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, get_run_logger

from core.protocols import DeleteReport
from core.settings import get_settings
from core.writer_lock import writer_lock
from flows.components import CHUNK_INDEX, ENTITY_INDEX, FACT_INDEX, PROPOSITION_INDEX, Components


def remove_from_store_and_indexes(c: Components, doc_ids: list[str]) -> dict[str, Any]:
    return remove_vectors(c, c.graph.delete_documents(doc_ids))


def remove_chunks_from_store_and_indexes(c: Components, chunk_ids: list[str]
                                         ) -> dict[str, Any]:
    """Chunks (an older version's) and what only they supported; documents stay."""
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


@flow(name="delete_documents", persist_result=False)
def delete_documents(doc_ids: list[str]) -> dict[str, Any]:
    """Delete documents by id; unknown ids are reported in `not_found`."""
    settings = get_settings()
    c = Components.from_settings(settings)
    try:
        with writer_lock(settings, "delete", notify=get_run_logger().info):
            known = set(c.graph.document_states())
            found = [d for d in doc_ids if d in known]
            report = remove_from_store_and_indexes(c, found)
    finally:
        c.close()
    report["not_found"] = [d for d in doc_ids if d not in known]
    return report
