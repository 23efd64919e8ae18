"""`CypherGraphStore`: the GraphStore protocol written once over the shared Cypher.

A backend supplies the transport (`_write`, `_read`, `_write_unit`, `_run_read_only`)
and the engine specifics (schema, ping, clear, close); records become parameter rows
here and rows become records here, so both backends behave the same by construction.
"""

from __future__ import annotations

import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from core.models import Chunk, Document, Entity, Mention, Proposition, Relation, Synonym
from core.protocols import (
    DeleteReport,
    DocumentInfo,
    DocumentState,
    GraphStats,
    Neighbour,
    QueryResult,
)
from kg.store import cypher as queries
from kg.store.read_only import ensure_read_only

Row = dict[str, Any]
EdgeKind = Literal["mentions", "synonyms", "relations"]
#: Runs one statement with parameters and returns its rows as plain dicts.
Runner = Callable[[str, dict[str, Any]], list[Row]]
T = TypeVar("T")

DEFAULT_BATCH_SIZE = 500


def search_key(text: str) -> str:
    """What `find_entities` compares: NFKC, casefolded, whitespace squashed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _batches(rows: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(rows), size):
        yield list(rows[i : i + size])


class CypherGraphStore(ABC):
    """Shared implementation of `core.protocols.GraphStore` over `kg.store.cypher`."""

    supports_bolt: bool = False
    supports_constraints: bool = True

    def __init__(
        self,
        dialect: queries.Dialect,
        *,
        row_limit: int = 1000,
        timeout_s: float = 30.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.dialect = dialect
        self.row_limit = row_limit
        self.timeout_s = timeout_s
        self.batch_size = batch_size

    # ------------------------------------------------------------------ transport (backend)

    @abstractmethod
    def _write(self, query: str, params: dict[str, Any]) -> list[Row]:
        """Run one write statement (its own transaction) and return its rows."""

    @abstractmethod
    def _read(self, query: str, params: dict[str, Any]) -> list[Row]:
        """Run one statement of kgrag's own reads and return its rows."""

    def _write_unit(self, work: Callable[[Runner], T]) -> T:
        """Run several dependent write statements as one unit (a transaction where the
        engine has them; FalkorDB sends the writes as one MULTI/EXEC block)."""
        return work(self._write)

    @abstractmethod
    def _run_read_only(
        self, query: str, params: dict[str, Any], limit: int, timeout_s: float
    ) -> QueryResult:
        """Run a user's query with the engine's own read-only mode, row limit and timeout."""

    # ------------------------------------------------------------------ engine (backend)

    @abstractmethod
    def ensure_schema(self) -> None: ...

    @abstractmethod
    def ping(self) -> bool: ...

    @abstractmethod
    def clear(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    # ------------------------------------------------------------------ writes

    def _write_rows(self, query: str, rows: Sequence[Row]) -> None:
        for batch in _batches(rows, self.batch_size):
            self._write(query, {"rows": batch})

    def upsert_documents(self, docs: Sequence[Document],
                         retry_chunks: Mapping[str, Sequence[str]] | None = None) -> None:
        """Documents marked done (their sha256); `retry_chunks[doc_id]` lists chunks whose
        extraction failed, for a later run to try again."""
        retry = retry_chunks or {}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        rows = [
            {"id": d.id, "source": d.source, "title": d.title, "sha256": d.sha256,
             "retry_chunks": list(retry.get(d.id, ())),
             "path": str(d.metadata.get("path", "")), "ingested_at": now} for d in docs
        ]
        self._write_rows(queries.UPSERT_DOCUMENTS, rows)

    def upsert_chunks(self, chunks: Sequence[Chunk]) -> None:
        """Chunks with PART_OF their document, then each touched document's NEXT chain
        rebuilt by position."""
        rows = [
            {
                "id": c.id,
                "doc_id": c.doc_id,
                "text": c.text,
                "start": c.start,
                "end": c.end,
                "position": c.position,
            }
            for c in chunks
        ]
        self._write_rows(queries.UPSERT_CHUNKS, rows)
        doc_ids = list(dict.fromkeys(c.doc_id for c in chunks))
        for batch in _batches(doc_ids, self.batch_size):
            self._write_unit(_next_relinker(batch))

    def upsert_entities(self, entities: Sequence[Entity], *, keep_existing: bool = False
                        ) -> None:
        """Name is overwritten; an empty type/description keeps the stored one; aliases
        accumulate. `keep_existing`: only create entities that are missing (the mention
        layer, which must not overwrite what the extractor wrote)."""
        rows = [
            {
                "id": e.id,
                "name": e.name,
                "type": e.type,
                "description": e.description,
                "aliases": list(e.aliases),
                "search": list(dict.fromkeys(search_key(n) for n in (e.name, *e.aliases))),
            }
            for e in entities
        ]
        self._write_rows(queries.CREATE_ENTITIES if keep_existing else queries.UPSERT_ENTITIES,
                         rows)

    def upsert_mentions(self, mentions: Sequence[Mention]) -> None:
        """Entity -[:MENTIONED_IN]-> Chunk; a mention of a missing entity or chunk is
        skipped, so write entities and chunks first."""
        rows = [{"entity_id": m.entity_id, "chunk_id": m.chunk_id, "count": int(m.count)}
                for m in mentions]
        self._write_rows(queries.UPSERT_MENTIONS, rows)

    def upsert_synonyms(self, synonyms: Sequence[Synonym]) -> None:
        """Entity -[:SYNONYM {score}]-> Entity; missing entities are skipped."""
        rows = [{"source_id": x.source_id, "target_id": x.target_id,
                 "score": float(x.score)} for x in synonyms]
        self._write_rows(queries.UPSERT_SYNONYMS, rows)

    def upsert_relations(self, relations: Sequence[Relation]) -> None:
        """One RELATES edge per (subject, predicate, object, chunk); a relation whose
        subject or object entity is missing is skipped."""
        rows = [
            {
                "subject_id": r.subject_id,
                "predicate": r.predicate,
                "raw_predicate": r.raw_predicate or r.predicate,
                "object_id": r.object_id,
                "chunk_id": r.chunk_id,
                "doc_id": r.doc_id,
                "confidence": float(r.confidence),
                "judge_score": None if r.judge_score is None else float(r.judge_score),
            }
            for r in relations
        ]
        self._write_rows(queries.UPSERT_RELATIONS, rows)

    def upsert_propositions(self, props: Sequence[Proposition]) -> None:
        rows = [
            {
                "id": p.id,
                "text": p.text,
                "chunk_id": p.chunk_id,
                "doc_id": p.doc_id,
                "entity_ids": list(p.entity_ids),
            }
            for p in props
        ]
        for batch in _batches(rows, self.batch_size):
            params = {"rows": batch}
            self._write(queries.UPSERT_PROPOSITIONS, params)
            self._write(queries.LINK_PROPOSITIONS_FROM, params)
            self._write(queries.LINK_PROPOSITIONS_ABOUT, params)

    # ------------------------------------------------------------------ reads

    def document_hashes(self) -> dict[str, str]:
        """The sha256 of every document marked done."""
        return {d: s.sha256 for d, s in self.document_states().items() if s.sha256}

    def list_documents(self) -> list[DocumentInfo]:
        """Every document, sorted by source, with its chunk and entity counts."""
        return [DocumentInfo(id=r["id"], source=r["source"] or "", title=r["title"] or "",
                             path=r["path"] or "", ingested_at=r["ingested_at"] or "",
                             chunks=int(r["chunks"]), entities=int(r["entities"]),
                             done=bool(r["sha256"]))
                for r in self._read(queries.LIST_DOCUMENTS, {})]

    def document_states(self) -> dict[str, DocumentState]:
        """Every document the graph holds, placeholders (sha256 empty: a killed run wrote
        some of its chunks) included, with the chunks whose extraction is to be retried."""
        return {r["id"]: DocumentState(r["sha256"] or "", tuple(r["retry_chunks"] or ()))
                for r in self._read(queries.DOCUMENT_STATES, {})}

    def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        """Chunks in the order of `chunk_ids`; unknown ids are left out."""
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return []
        found = {r["id"]: _chunk(r) for r in self._read(queries.GET_CHUNKS, {"ids": ids})}
        return [found[i] for i in ids if i in found]

    def chunks_of_document(self, doc_id: str) -> list[Chunk]:
        return [_chunk(r) for r in self._read(queries.CHUNKS_OF_DOCUMENT, {"doc_id": doc_id})]

    def get_entities(self, entity_ids: Sequence[str]) -> list[Entity]:
        """Entities in the order of `entity_ids`; unknown ids are left out."""
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return []
        found = {r["id"]: _entity(r) for r in self._read(queries.GET_ENTITIES, {"ids": ids})}
        return [found[i] for i in ids if i in found]

    def find_entities(self, name: str, limit: int = 10) -> list[Entity]:
        """Entities whose name or an alias contains `name`, ignoring case; exact first."""
        q = search_key(name)
        if not q:
            return []
        rows = self._read(queries.FIND_ENTITIES, {"q": q, "limit": int(limit)})
        return [_entity(r) for r in rows]

    def relation_candidates(self, entity_id: str) -> list[tuple[str, bool, int]]:
        """(predicate, outgoing, distinct neighbours) for each relation of an entity,
        most connected first."""
        rows = self._read(queries.RELATION_CANDIDATES, {"id": entity_id})
        found = [(r["predicate"], bool(r["outgoing"]), int(r["n"])) for r in rows if r["n"]]
        return sorted(found, key=lambda t: (-t[2], t[0], not t[1]))

    def neighbours(
        self, entity_id: str, predicate: str | None = None, limit: int = 50
    ) -> list[Neighbour]:
        """Entities one RELATES edge away, best-supported edge per (entity, predicate,
        direction), highest confidence first."""
        params = {"id": entity_id, "predicate": predicate, "limit": int(limit)}
        return [
            Neighbour(
                entity=_entity(r),
                predicate=r["predicate"],
                outgoing=bool(r["outgoing"]),
                chunk_id=r["chunk_id"],
                confidence=float(r["confidence"] if r["confidence"] is not None else 0.0),
            )
            for r in self._read(queries.NEIGHBOURS, params)
        ]

    def chunks_mentioning(self, entity_ids: Sequence[str], limit: int = 10) -> list[Chunk]:
        """Chunks that mention the entities, those mentioning most of them first."""
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return []
        rows = self._read(queries.CHUNKS_MENTIONING, {"ids": ids, "limit": int(limit)})
        return [_chunk(r) for r in rows]

    def entity_documents(self, entity_id: str, limit: int = 50) -> list[Document]:
        """Documents whose chunks mention the entity, most mentions first."""
        rows = self._read(queries.ENTITY_DOCUMENTS, {"id": entity_id, "limit": int(limit)})
        return [Document(id=r["id"], source=r["source"] or "", title=r["title"] or "",
                         sha256=r["sha256"] or "") for r in rows]

    def edges(self, kind: EdgeKind) -> list[tuple[str, str, float]]:
        """Every edge of one kind as (source id, target id, weight), read in pages:
        `mentions` (entity, chunk, count), `synonyms` (entity, entity, cosine),
        `relations` (subject, object, judge score or confidence)."""
        query = {"mentions": queries.MENTION_EDGES, "synonyms": queries.SYNONYM_EDGES,
                 "relations": queries.RELATION_EDGES}[kind]
        return [(r["source"], r["target"], float(r["weight"] if r["weight"] is not None
                                                 else 1.0))
                for r in self._paged(query)]

    def entity_names(self) -> dict[str, str]:
        """Every entity's name by id."""
        return {r["id"]: r["name"] or "" for r in self._paged(queries.ENTITY_NAMES)}

    def chunk_ids(self) -> list[str]:
        """Every chunk's id (the passage nodes of the PageRank snapshot)."""
        return [r["id"] for r in self._paged(queries.CHUNK_IDS)]

    def proposition_ids(self) -> list[str]:
        """Every proposition's id."""
        return [r["id"] for r in self._paged(queries.PROPOSITION_IDS)]

    def chunk_texts(self) -> dict[str, str]:
        """Every chunk's text by id (for lexical indexes built from the graph)."""
        return {r["id"]: r["text"] or "" for r in self._paged(queries.CHUNK_TEXTS)}

    def _paged(self, query: str, page: int = 20_000) -> Iterator[Row]:
        skip = 0
        while True:
            rows = self._read(query, {"skip": skip, "limit": page})
            yield from rows
            if len(rows) < page:
                return
            skip += page

    def stats(self) -> GraphStats:
        nodes = dict.fromkeys(queries.NODE_LABELS, 0)
        for r in self._read(queries.NODE_COUNTS, {}):
            nodes[r["label"]] = int(r["n"])
        rels = dict.fromkeys(queries.REL_TYPES, 0)
        for r in self._read(queries.REL_COUNTS, {}):
            rels[r["type"]] = int(r["n"])
        return GraphStats(nodes=nodes, relationships=rels)

    # ------------------------------------------------------------------ delete

    def delete_documents(self, doc_ids: Sequence[str]) -> DeleteReport:
        """Remove documents and exactly what only they supported.

        Goes: their chunks (and with them NEXT/PART_OF/MENTIONED_IN), RELATES edges from
        their chunks, propositions from them, then the entities they touched that no
        remaining chunk mentions and no remaining fact or proposition uses. A fact that
        another document also supports keeps that document's edge. No LLM call.
        """
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return DeleteReport()
        return self._write_unit(lambda run: _delete_documents(run, ids))

    def delete_chunks(self, chunk_ids: Sequence[str]) -> DeleteReport:
        """Remove chunks (an older version's, once the new one is written) and exactly
        what only they supported, as `delete_documents` does; their documents stay and
        their NEXT chains are rebuilt."""
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return DeleteReport()
        return self._write_unit(lambda run: _delete_chunks(run, ids))

    # ------------------------------------------------------------------ console

    def read_query(
        self,
        cypher: str,
        params: dict[str, Any] | None = None,
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult:
        """Run a user's Cypher read-only: writes raise `ReadOnlyViolation`, errors
        `QueryError`; at most `limit` rows (`truncated` says when more existed)."""
        ensure_read_only(cypher)
        return self._run_read_only(
            cypher,
            dict(params or {}),
            int(limit or self.row_limit),
            float(timeout_s or self.timeout_s),
        )

    def __enter__(self) -> CypherGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _delete_documents(run: Runner, doc_ids: list[str]) -> DeleteReport:
    chunk_ids = [r["id"] for r in run(queries.DOC_CHUNK_IDS, {"doc_ids": doc_ids})]
    return _delete_scope(run, doc_ids, chunk_ids)


def _delete_chunks(run: Runner, chunk_ids: list[str]) -> DeleteReport:
    doc_ids = [r["id"] for r in run(queries.CHUNK_DOC_IDS, {"chunk_ids": chunk_ids})]
    report = _delete_scope(run, [], chunk_ids)
    _next_relinker(doc_ids)(run)
    return report


def _delete_scope(run: Runner, doc_ids: list[str], chunk_ids: list[str]) -> DeleteReport:
    """Delete these chunks, the facts and propositions from them (or from these
    documents), the documents, then the entities left unsupported."""
    scope = {"doc_ids": doc_ids, "chunk_ids": chunk_ids}
    entity_ids = list(dict.fromkeys(r["id"] for r in run(queries.DOC_ENTITY_IDS, scope)))
    relations = _count(run(queries.DELETE_DOC_RELATIONS, scope))
    deleted_props = run(queries.DELETE_DOC_PROPOSITIONS, scope)
    chunks = _count(run(queries.DELETE_CHUNKS, {"chunk_ids": chunk_ids}))
    deleted_entities = run(queries.DELETE_UNSUPPORTED_ENTITIES, {"entity_ids": entity_ids})
    documents = _count(run(queries.DELETE_DOCUMENTS, {"doc_ids": doc_ids}))
    return DeleteReport(
        documents=documents,
        chunks=chunks,
        relations=relations,
        propositions=_count(deleted_props),
        entities=_count(deleted_entities),
        chunk_ids=chunk_ids,
        entity_ids=_ids(deleted_entities),
        proposition_ids=_ids(deleted_props),
    )


def _next_relinker(doc_ids: list[str]) -> Callable[[Runner], None]:
    """Work that rebuilds the NEXT chain of these documents from chunk positions."""

    def relink(run: Runner) -> None:
        run(queries.UNLINK_NEXT, {"doc_ids": doc_ids})
        run(queries.LINK_NEXT, {"doc_ids": doc_ids})

    return relink


def _ids(rows: list[Row]) -> list[str]:
    return [str(i) for i in rows[0]["ids"]] if rows else []


def _count(rows: list[Row]) -> int:
    return int(rows[0]["n"]) if rows else 0


def _chunk(r: Row) -> Chunk:
    return Chunk(
        id=r["id"],
        doc_id=r["doc_id"],
        text=r["text"] or "",
        start=int(r["start"]),
        end=int(r["end"]),
        position=int(r["position"]),
    )


def _entity(r: Row) -> Entity:
    return Entity(
        id=r["id"],
        name=r["name"] or "",
        type=r["type"] or "",
        description=r["description"] or "",
        aliases=tuple(r["aliases"] or ()),
    )
