"""LlamaIndex `PropertyGraphStore` over kgrag's graph: `PropertyGraphIndex` retrievers on a
kgrag graph, FalkorDB or Neo4j alike (only `core.protocols.GraphStore` is used).

How kgrag's schema reads in LlamaIndex's terms:

- `(:Entity)` is an `EntityNode`: its `name`, `label` its type, `properties` its kgrag `id`,
  `type`, `description` and `aliases`. LlamaIndex calls a node's name its id, so `get(ids=)`
  takes kgrag ids and names alike (names as kgrag resolves them: case and punctuation
  ignored, aliases too).
- `(:Chunk)` is a `ChunkNode` (id, text; `doc_id`, `start`, `end`, `position`), and the
  `llama nodes` of the store: `get_llama_nodes` gives chunks as `TextNode`s.
- A `RELATES` edge is a `Relation` labelled with its predicate ("married"), its chunk in
  `chunk_id` and `triplet_source_id`; the subject of each triplet carries the same source,
  so retrievers with `include_text` attach the chunk that states the fact.

Capabilities, as the flags say:

- structured queries: Cypher through the store's read-only path (`GraphStore.read_query`):
  rows come back as dicts, a query that would write raises `ReadOnlyViolation`.
  `get_schema` is kgrag's live schema (`retrieval.text_to_cypher.graph_schema`); give
  `TextToCypherRetriever` `cypher_validator=extract_cypher` to strip a model's fences.
- vector queries: only with kgrag's entity index (`from_components` passes it); query
  vectors must come from the embedder that built it, which `KgragEmbedding` gives LlamaIndex.
- writes: refused with `ReadOnlyViolation`. kgrag's ingest writes the graph with provenance
  (every entity, fact and proposition tied to chunks and documents, so deleting a document
  removes exactly what it supported) and keeps the FAISS indexes in step; LlamaIndex's
  upserts carry neither, so they are not mapped onto it. Ingest with `kgrag ingest`.

    >>> components = Components.from_settings()                     # doctest: +SKIP
    >>> store = KgragPropertyGraphStore.from_components(components)   # doctest: +SKIP
    >>> index = PropertyGraphIndex.from_existing(                     # doctest: +SKIP
    ...     store, llm=llm, embed_model=KgragEmbedding(components.embedder))
    >>> index.as_retriever().retrieve("Who did Marie Curie marry?")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.graph_stores.types import (
    TRIPLET_SOURCE_KEY,
    ChunkNode,
    EntityNode,
    LabelledNode,
    PropertyGraphStore,
    Relation,
    Triplet,
)
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

from core.errors import ReadOnlyViolation
from core.models import Chunk, Entity, entity_id, normalise_name
from core.protocols import Embedder, GraphStore, VectorIndex
from retrieval.text_to_cypher import graph_schema

if TYPE_CHECKING:
    from flows.components import Components

CHUNK_LABEL = "Chunk"
#: Rows per page when a read may be larger than the store's row limit.
PAGE = 1000

# Static, parameterised reads (a `$key IS NULL` filter is off); run through `read_query`.
_ENTITIES_WHERE = (
    "MATCH (e:Entity) WHERE ($id IS NULL OR e.id = $id) AND ($name IS NULL OR e.name = $name) "
    "AND ($type IS NULL OR e.type = $type) "
    "AND ($description IS NULL OR e.description = $description) "
    "RETURN e.id AS id ORDER BY id SKIP $skip LIMIT $limit"
)
_CHUNKS_WHERE = (
    "MATCH (c:Chunk) WHERE ($id IS NULL OR c.id = $id) AND ($doc_id IS NULL OR c.doc_id = "
    "$doc_id) AND ($text IS NULL OR c.text = $text) AND ($start IS NULL OR c.start = $start) "
    "AND ($end IS NULL OR c.end = $end) AND ($position IS NULL OR c.position = $position) "
    "RETURN c.id AS id ORDER BY id SKIP $skip LIMIT $limit"
)
_ENTITY_KEYS = ("id", "name", "type", "description")
_CHUNK_KEYS = ("id", "doc_id", "text", "start", "end", "position")
_TRIPLETS = (
    "MATCH (s:Entity)-[r:RELATES]->(o:Entity) "
    "WHERE ($named IS NULL OR s.id IN $named OR o.id IN $named) "
    "AND ($ids IS NULL OR s.id IN $ids OR o.id IN $ids) "
    "AND ($predicates IS NULL OR r.predicate IN $predicates) "
    "RETURN s.id AS subject, r.predicate AS predicate, o.id AS object, "
    "r.chunk_id AS chunk_id, r.confidence AS confidence "
    "ORDER BY subject, predicate, object, chunk_id SKIP $skip LIMIT $limit"
)

WRITE_HINT = ("kgrag's graph is written by `kgrag ingest` / `kgrag delete`, which keep "
              "provenance and the vector indexes in step")


def entity_node(entity: Entity, source_chunk: str | None = None) -> EntityNode:
    """A kgrag entity as LlamaIndex's node; `source_chunk` marks the chunk of a triplet."""
    properties: dict[str, Any] = {"id": entity.id, "type": entity.type,
                                  "description": entity.description,
                                  "aliases": list(entity.aliases)}
    if source_chunk:
        properties[TRIPLET_SOURCE_KEY] = source_chunk
    return EntityNode(name=entity.name, label=entity.type or "Entity", properties=properties)


def chunk_node(chunk: Chunk) -> ChunkNode:
    return ChunkNode(text=chunk.text, id_=chunk.id, label=CHUNK_LABEL,
                     properties={"doc_id": chunk.doc_id, "start": chunk.start,
                                 "end": chunk.end, "position": chunk.position})


def triplet(subject: Entity, predicate: str, obj: Entity, chunk_id: str,
            confidence: float | None) -> Triplet:
    relation = Relation(label=predicate, source_id=subject.name, target_id=obj.name,
                        properties={"chunk_id": chunk_id, "confidence": confidence,
                                    TRIPLET_SOURCE_KEY: chunk_id})
    return entity_node(subject, chunk_id), relation, entity_node(obj)


class KgragPropertyGraphStore(PropertyGraphStore):
    """kgrag's graph, read through LlamaIndex's `PropertyGraphStore` interface (see the
    module docstring for the mapping); writes raise `ReadOnlyViolation`.

    `entity_index`: kgrag's entity vectors (`"entities"` index), which turns on
    `vector_query`; `embedder`: the model that built them, used for a query given as text.
    """

    supports_structured_queries: bool = True
    supports_vector_queries: bool = False

    def __init__(self, graph: GraphStore, *, entity_index: VectorIndex | None = None,
                 embedder: Embedder | None = None, schema_samples: int = 12) -> None:
        self.graph = graph
        self.entity_index = entity_index
        self.embedder = embedder
        self.schema_samples = schema_samples
        self.supports_vector_queries = entity_index is not None
        self._schema: str | None = None

    @classmethod
    def from_components(cls, components: Components) -> KgragPropertyGraphStore:
        """The configured graph with its entity index and embedder."""
        from flows.components import ENTITY_INDEX

        return cls(components.graph, entity_index=components.index(ENTITY_INDEX),
                   embedder=components.embedder)

    @property
    def client(self) -> GraphStore:
        return self.graph

    # ------------------------------------------------------------------ nodes

    def get(self, properties: dict | None = None,
            ids: list[str] | None = None) -> list[LabelledNode]:
        """Entities and chunks by id (kgrag ids, entity names), in the order asked, and/or
        whose properties equal all of `properties`; neither: every entity and chunk."""
        if ids is None:
            return self._nodes_where(properties or {})
        nodes = self._nodes_by_id(ids)
        if not properties:
            return nodes
        return [n for n in nodes if all(_node_fields(n).get(k) == v
                                        for k, v in properties.items())]

    def _nodes_by_id(self, ids: Sequence[str]) -> list[LabelledNode]:
        return [chunk_node(x) if isinstance(x, Chunk) else entity_node(x)
                for x in self._lookup(ids)]

    def _lookup(self, ids: Sequence[str]) -> list[Chunk | Entity]:
        """The chunks and entities `ids` name, each once, in the order asked."""
        keys = list(dict.fromkeys(ids))
        chunks = {c.id: c for c in self.graph.get_chunks(keys)}
        entities = {e.id: e for e in self.graph.get_entities(
            [*keys, *(entity_id(k) for k in keys)])}
        found: dict[str, Chunk | Entity] = {}
        for key in keys:
            if key in chunks:
                found.setdefault(key, chunks[key])
                continue
            for entity in self._entities_for(key, entities):
                found.setdefault(entity.id, entity)
        return list(found.values())

    def _entities_for(self, key: str, fetched: dict[str, Entity]) -> list[Entity]:
        """The entity `key` names: by kgrag id, by normalised name, else by an alias."""
        for candidate in (key, entity_id(key)):
            if candidate in fetched:
                return [fetched[candidate]]
        wanted = normalise_name(key)
        if not wanted:
            return []
        return [e for e in self.graph.find_entities(key, limit=10)
                if wanted in {normalise_name(n) for n in (e.name, *e.aliases)}]

    def _nodes_where(self, properties: dict[str, Any]) -> list[LabelledNode]:
        """Nodes whose stored properties equal `properties`; a key a label lacks rules
        that label out (no node of it has the property)."""
        nodes: list[LabelledNode] = []
        if set(properties) <= set(_ENTITY_KEYS):
            params = {k: properties.get(k) for k in _ENTITY_KEYS}
            ids = [r["id"] for r in self._read_all(_ENTITIES_WHERE, params)]
            nodes += [entity_node(e) for e in self.graph.get_entities(ids)]
        if set(properties) <= set(_CHUNK_KEYS):
            params = {k: properties.get(k) for k in _CHUNK_KEYS}
            ids = [r["id"] for r in self._read_all(_CHUNKS_WHERE, params)]
            nodes += [chunk_node(c) for c in self.graph.get_chunks(ids)]
        return nodes

    def get_llama_nodes(self, node_ids: list[str]) -> list[BaseNode]:
        """The chunks among `node_ids` as `TextNode`s (the source text of triplets)."""
        return [TextNode(id_=c.id, text=c.text,
                         metadata={"doc_id": c.doc_id, "position": c.position})
                for c in self.graph.get_chunks(node_ids)]

    async def aget_llama_nodes(self, node_ids: list[str]) -> list[BaseNode]:
        return self.get_llama_nodes(node_ids)

    # ------------------------------------------------------------------ triplets

    def get_triplets(self, entity_names: list[str] | None = None,
                     relation_names: list[str] | None = None,
                     properties: dict | None = None,
                     ids: list[str] | None = None) -> list[Triplet]:
        """RELATES facts touching the named entities and the entities of `ids` (either
        end), with one of the predicates, with a node or the relation having each of
        `properties`; one triplet per supporting chunk. No filter at all: none."""
        if not (entity_names or relation_names or properties or ids):
            return []
        params = {"named": self._entity_ids(entity_names), "ids": self._entity_ids(ids),
                  "predicates": None if relation_names is None else list(relation_names)}
        rows = list(self._read_all(_TRIPLETS, params))
        ends = {e.id: e for e in self.graph.get_entities(
            [r[end] for r in rows for end in ("subject", "object")])}
        found = [triplet(ends[r["subject"]], r["predicate"], ends[r["object"]],
                         r["chunk_id"], r["confidence"])
                 for r in rows if r["subject"] in ends and r["object"] in ends]
        return [t for t in found if _has_properties(t, properties or {})]

    def _entity_ids(self, keys: Sequence[str] | None) -> list[str] | None:
        if keys is None:
            return None
        return [x.id for x in self._lookup(keys) if isinstance(x, Entity)]

    def get_rel_map(self, graph_nodes: list[LabelledNode], depth: int = 2, limit: int = 30,
                    ignore_rels: list[str] | None = None) -> list[Triplet]:
        """Facts up to `depth` RELATES hops from the entities among `graph_nodes` (either
        direction, the best-supported edge per neighbour and predicate), nearest hops
        first, at most `limit`; predicates in `ignore_rels` are skipped. Mentions are the
        source links of this graph (LlamaIndex's `SOURCE`), not facts: never walked."""
        ignored = set(ignore_rels or ())
        keys = [n.properties.get("id") or n.id for n in graph_nodes
                if not isinstance(n, ChunkNode)]
        frontier = [x for x in self._lookup(keys) if isinstance(x, Entity)]
        reached = {e.id for e in frontier}
        seen: set[tuple[str, str, str]] = set()
        found: list[Triplet] = []
        for _ in range(depth):
            next_frontier: list[Entity] = []
            for entity in frontier:
                for nb in self.graph.neighbours(entity.id, limit=limit):
                    subject, obj = (entity, nb.entity) if nb.outgoing else (nb.entity, entity)
                    key = (subject.id, nb.predicate, obj.id)
                    if nb.predicate in ignored or key in seen:
                        continue
                    seen.add(key)
                    found.append(triplet(subject, nb.predicate, obj, nb.chunk_id,
                                         nb.confidence))
                    if len(found) >= limit:
                        return found
                    if nb.entity.id not in reached:
                        reached.add(nb.entity.id)
                        next_frontier.append(nb.entity)
            frontier = next_frontier
        return found

    # ------------------------------------------------------------------ queries

    def structured_query(self, query: str,
                         param_map: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a read-only Cypher query (at most the store's row limit); a query that
        would write raises `ReadOnlyViolation`, an engine error `QueryError`."""
        return self.graph.read_query(query, dict(param_map or {})).rows

    def vector_query(self, query: VectorStoreQuery,
                     **kwargs: Any) -> tuple[list[LabelledNode], list[float]]:
        """The entities nearest the query vector (or `query_str`, embedded with kgrag's
        embedder) in kgrag's entity index, best first, with their cosines."""
        if self.entity_index is None:
            raise ValueError("this store was built without kgrag's entity index, so it has "
                             "no vector queries; build it with `from_components`")
        if query.filters is not None:
            raise ValueError("metadata filters are not supported on kgrag's entity index")
        hits = self.entity_index.search(self._query_vector(query)[None, :],
                                        query.similarity_top_k)[0]
        entities = {e.id: e for e in self.graph.get_entities([h.id for h in hits])}
        kept = [h for h in hits if h.id in entities]  # an index may lag a delete
        return [entity_node(entities[h.id]) for h in kept], [float(h.score) for h in kept]

    def _query_vector(self, query: VectorStoreQuery) -> np.ndarray:
        if query.query_embedding is not None:
            vector = np.asarray(query.query_embedding, dtype=np.float32)
        elif query.query_str and self.embedder is not None:
            vector = self.embedder.embed([query.query_str])[0]
        else:
            raise ValueError("the vector query has neither an embedding nor a text that "
                             "kgrag's embedder could embed")
        if self.embedder is not None and vector.shape[-1] != self.embedder.dimension:
            raise ValueError(
                f"query vector of dimension {vector.shape[-1]}, but kgrag's entity index "
                f"holds {self.embedder.model_name} vectors of dimension "
                f"{self.embedder.dimension}; embed queries with KgragEmbedding(embedder)")
        return vector

    def get_schema(self, refresh: bool = False) -> str:
        """kgrag's graph as it is (labels, properties, relationship patterns, frequent
        predicates, entity types and names), for text-to-Cypher prompts."""
        if self._schema is None or refresh:
            self._schema = graph_schema(self.graph, samples=self.schema_samples).text
        return self._schema

    def _read_all(self, query: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every row of a paged read (`$skip`, `$limit`), past the store's row limit."""
        skip = 0
        while True:
            rows = self.graph.read_query(query, {**params, "skip": skip, "limit": PAGE},
                                         limit=PAGE).rows
            yield from rows
            if len(rows) < PAGE:
                return
            skip += PAGE

    # ------------------------------------------------------------------ writes: refused

    def upsert_nodes(self, nodes: Sequence[LabelledNode]) -> None:
        raise _refused("upsert nodes")

    def upsert_relations(self, relations: list[Relation]) -> None:
        raise _refused("upsert relations")

    def upsert_llama_nodes(self, llama_nodes: list[BaseNode]) -> None:
        raise _refused("upsert llama nodes")

    def delete(self, entity_names: list[str] | None = None,
               relation_names: list[str] | None = None, properties: dict | None = None,
               ids: list[str] | None = None) -> None:
        raise _refused("delete")

    def delete_llama_nodes(self, node_ids: list[str] | None = None,
                           ref_doc_ids: list[str] | None = None) -> None:
        raise _refused("delete llama nodes")


def _refused(what: str) -> ReadOnlyViolation:
    return ReadOnlyViolation(f"the LlamaIndex graph store over kgrag is read-only; "
                             f"refused to {what}", hint=WRITE_HINT)


def _has_properties(found: Triplet, properties: dict[str, Any]) -> bool:
    """Each of `properties` held by the subject, the relation or the object."""
    subject, relation, obj = found
    parts = (_node_fields(subject), relation.properties, _node_fields(obj))
    return all(any(p.get(k) == v for p in parts) for k, v in properties.items())


def _node_fields(node: LabelledNode) -> dict[str, Any]:
    """A node's properties with its name or text, as `get` compares them."""
    if isinstance(node, EntityNode):
        return {**node.properties, "name": node.name}
    if isinstance(node, ChunkNode):
        return {**node.properties, "id": node.id, "text": node.text}
    return dict(node.properties)


class KgragEmbedding(BaseEmbedding):
    """kgrag's embedder as a LlamaIndex embed model, so LlamaIndex's query vectors live
    in the space of kgrag's entity index (`VectorContextRetriever`, `PropertyGraphIndex`).

        >>> KgragEmbedding(SentenceTransformerEmbedder()).get_query_embedding("Warsaw")[:2]
        [0.01..., -0.04...]                                          # doctest: +SKIP
    """

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.model_name, **kwargs)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "KgragEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return self._get_text_embedding(query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return [[float(x) for x in row] for row in self._embedder.embed(texts)]
