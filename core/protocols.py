"""The small interfaces several stages share. Implementations live in the stage that owns
them (`kg/store`, `retrieval/index`, `core/llm`, `core/embed`); `core/factory` wires them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from core.models import Chunk, Document, Entity, Mention, Proposition, Relation, Synonym

# --------------------------------------------------------------------------- graph store


@dataclass(frozen=True)
class QueryResult:
    """Result of a read-only Cypher query: `{"columns": [...], "rows": [{col: value}]}`."""

    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


@dataclass(frozen=True)
class GraphStats:
    nodes: dict[str, int]
    relationships: dict[str, int]


@dataclass(frozen=True)
class DeleteReport:
    """What deleting documents removed."""

    documents: int = 0
    chunks: int = 0
    relations: int = 0
    propositions: int = 0
    entities: int = 0
    chunk_ids: list[str] = field(default_factory=list)
    entity_ids: list[str] = field(default_factory=list)  # entities removed with them
    proposition_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentInfo:
    """A document as `kgrag docs list` shows it. `path`: the absolute path of the file it
    was read from ("" for text sent through the API or ingested before paths were kept);
    `ingested_at`: when its current version was written (UTC, ISO 8601)."""

    id: str
    source: str
    title: str
    path: str
    ingested_at: str
    chunks: int
    entities: int
    done: bool  # False: a placeholder a killed run left (the next ingest finishes it)


@dataclass(frozen=True)
class DocumentState:
    """What the graph knows of a document: its sha256 when it was marked done (empty for a
    placeholder a killed run left), and chunks whose extraction is to be retried."""

    sha256: str = ""
    retry_chunks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Neighbour:
    """One edge seen from a frontier entity, for graph reasoning."""

    entity: Entity
    predicate: str
    outgoing: bool  # True: frontier -[predicate]-> entity
    chunk_id: str
    confidence: float


@runtime_checkable
class GraphStore(Protocol):
    """Batched, idempotent access to the knowledge graph (schema in DESIGN.md)."""

    #: Capability flags, so callers need no isinstance checks.
    supports_bolt: bool
    supports_constraints: bool

    def ensure_schema(self) -> None: ...
    def upsert_documents(self, docs: Sequence[Document],
                         retry_chunks: Mapping[str, Sequence[str]] | None = None) -> None: ...
    def upsert_chunks(self, chunks: Sequence[Chunk]) -> None: ...
    def upsert_entities(self, entities: Sequence[Entity], *, keep_existing: bool = False
                        ) -> None: ...
    def upsert_mentions(self, mentions: Sequence[Mention]) -> None: ...
    def upsert_synonyms(self, synonyms: Sequence[Synonym]) -> None: ...
    def upsert_relations(self, relations: Sequence[Relation]) -> None: ...
    def upsert_propositions(self, props: Sequence[Proposition]) -> None: ...
    def document_hashes(self) -> dict[str, str]: ...
    def list_documents(self) -> list[DocumentInfo]: ...
    def document_states(self) -> dict[str, DocumentState]: ...
    def get_chunks(self, chunk_ids: Sequence[str]) -> list[Chunk]: ...
    def chunks_of_document(self, doc_id: str) -> list[Chunk]: ...
    def get_entities(self, entity_ids: Sequence[str]) -> list[Entity]: ...
    def find_entities(self, name: str, limit: int = 10) -> list[Entity]: ...
    def relation_candidates(self, entity_id: str) -> list[tuple[str, bool, int]]: ...
    def neighbours(
        self, entity_id: str, predicate: str | None = None, limit: int = 50
    ) -> list[Neighbour]: ...
    def chunks_mentioning(self, entity_ids: Sequence[str], limit: int = 10) -> list[Chunk]: ...
    def entity_documents(self, entity_id: str, limit: int = 50) -> list[Document]: ...
    def delete_documents(self, doc_ids: Sequence[str]) -> DeleteReport: ...
    def delete_chunks(self, chunk_ids: Sequence[str]) -> DeleteReport: ...
    def edges(self, kind: Literal["mentions", "synonyms", "relations"]
              ) -> list[tuple[str, str, float]]: ...
    def entity_names(self) -> dict[str, str]: ...
    def chunk_ids(self) -> list[str]: ...
    def proposition_ids(self) -> list[str]: ...
    def chunk_texts(self) -> dict[str, str]: ...
    def read_query(
        self,
        cypher: str,
        params: dict[str, Any] | None = None,
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult: ...
    def stats(self) -> GraphStats: ...
    def ping(self) -> bool: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


# --------------------------------------------------------------------------- embeddings


@runtime_checkable
class Embedder(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dimension)."""
        ...


# --------------------------------------------------------------------------- text analysis


@dataclass(frozen=True)
class EntityMention:
    """A named-entity span found by the NER pipeline: offsets into the analysed text."""

    text: str
    label: str  # spaCy's label: PERSON, ORG, GPE, ...
    start: int
    end: int


@dataclass(frozen=True)
class TextAnalysis:
    """Sentences (character spans) and entity mentions of one text."""

    sentences: tuple[tuple[int, int], ...]
    mentions: tuple[EntityMention, ...]


@runtime_checkable
class TextAnalyser(Protocol):
    """Sentence splitting and NER (spaCy by default: `core.nlp.SpacyTextAnalyser`)."""

    model_name: str

    def analyse(self, texts: Sequence[str]) -> list[TextAnalysis]: ...
    def sentences(self, text: str) -> list[str]: ...


# --------------------------------------------------------------------------- vector index


@dataclass(frozen=True)
class Hit:
    id: str
    score: float


@runtime_checkable
class VectorIndex(Protocol):
    """Vectors keyed by string ids, persisted under the data dir."""

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None: ...
    def remove(self, ids: Sequence[str]) -> int: ...
    def search(self, vectors: np.ndarray, k: int) -> list[list[Hit]]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def save(self) -> None: ...
