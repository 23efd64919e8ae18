"""Every openCypher statement kgrag sends to a graph store, for both backends.

The schema (DESIGN.md):

    (:Document {id, source, title, sha256, path, ingested_at})
    (:Chunk {id, doc_id, text, start, end, position})-[:PART_OF]->(:Document)
    (:Chunk)-[:NEXT]->(:Chunk)                         by position within a document
    (:Entity {id, name, type, description, aliases, search})-[:MENTIONED_IN {count}]->(:Chunk)
    (:Entity)-[:SYNONYM {score}]->(:Entity)            name embeddings at cosine >= a setting
    (:Entity)-[:RELATES {predicate, raw_predicate, chunk_id, doc_id, confidence,
                         judge_score}]->(:Entity)
    (:Proposition {id, text, chunk_id, doc_id})-[:FROM]->(:Chunk)
    (:Proposition)-[:ABOUT]->(:Entity)

`Entity.search` holds the casefolded name and aliases (computed in Python: FalkorDB's
`toLower` only folds ASCII), so `find_entities` is a case-insensitive contains match.

Every statement takes its values as parameters; writes are `UNWIND $rows AS r MERGE ...`,
so writing the same batch twice changes nothing. The statements stay inside the openCypher
subset both engines run (no `EXISTS {}` / `COUNT {}` subqueries, no APOC); the few things
that differ (schema DDL) live in one `Dialect` per backend at the bottom of this module.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_LABELS = ("Document", "Chunk", "Entity", "Proposition")
REL_TYPES = ("PART_OF", "NEXT", "MENTIONED_IN", "SYNONYM", "RELATES", "FROM", "ABOUT")

# --------------------------------------------------------------------------- writes

# `retry_chunks`: the ids of chunks whose extraction failed; a re-run extracts them again.
UPSERT_DOCUMENTS = """
UNWIND $rows AS r
MERGE (d:Document {id: r.id})
SET d.source = r.source, d.title = r.title, d.sha256 = r.sha256,
    d.retry_chunks = r.retry_chunks, d.path = r.path, d.ingested_at = r.ingested_at
"""

# A chunk whose document was not written yet gets a placeholder Document (no sha256), so
# PART_OF always exists; upsert_documents fills it in later.
UPSERT_CHUNKS = """
UNWIND $rows AS r
MERGE (d:Document {id: r.doc_id})
MERGE (c:Chunk {id: r.id})
SET c.doc_id = r.doc_id, c.text = r.text, c.start = r.start, c.end = r.end,
    c.position = r.position
MERGE (c)-[:PART_OF]->(d)
"""

# NEXT is rebuilt per touched document (drop, then link by position), so it stays a
# simple chain whatever order or subset of chunks was written.
UNLINK_NEXT = """
UNWIND $doc_ids AS did
MATCH (a:Chunk {doc_id: did})-[n:NEXT]->(:Chunk)
DELETE n
"""

LINK_NEXT = """
UNWIND $doc_ids AS did
MATCH (c:Chunk {doc_id: did})
WITH did, c ORDER BY c.position, c.start, c.id
WITH did, collect(c) AS cs
UNWIND range(0, size(cs) - 2) AS i
WITH cs[i] AS a, cs[i + 1] AS b
MERGE (a)-[:NEXT]->(b)
"""

# Non-empty type/description win over empty ones; aliases and search keys accumulate.
UPSERT_ENTITIES = """
UNWIND $rows AS r
MERGE (e:Entity {id: r.id})
SET e.name = r.name,
    e.type = CASE WHEN r.type = '' THEN coalesce(e.type, '') ELSE r.type END,
    e.description = CASE WHEN r.description = '' THEN coalesce(e.description, '')
                         ELSE r.description END,
    e.aliases = coalesce(e.aliases, [])
                + [a IN r.aliases WHERE NOT a IN coalesce(e.aliases, [])],
    e.search = coalesce(e.search, []) + [k IN r.search WHERE NOT k IN coalesce(e.search, [])]
"""

# The mention layer and the extractor both write MENTIONED_IN; the larger count stays
# (counts are set, never added, so a re-run changes nothing).
# The mention layer's entities: created if new, never overwriting what the LLM extractor
# (or an earlier mention) wrote.
CREATE_ENTITIES = """
UNWIND $rows AS r
MERGE (e:Entity {id: r.id})
ON CREATE SET e.name = r.name, e.type = r.type, e.description = r.description,
              e.aliases = r.aliases, e.search = r.search
"""

UPSERT_MENTIONS = """
UNWIND $rows AS r
MATCH (e:Entity {id: r.entity_id})
MATCH (c:Chunk {id: r.chunk_id})
MERGE (e)-[m:MENTIONED_IN]->(c)
SET m.count = CASE WHEN m.count IS NULL OR m.count < r.count THEN r.count ELSE m.count END
"""

UPSERT_SYNONYMS = """
UNWIND $rows AS r
MATCH (a:Entity {id: r.source_id})
MATCH (b:Entity {id: r.target_id})
MERGE (a)-[s:SYNONYM]->(b)
SET s.score = r.score
"""

# One edge per (subject, predicate, object, chunk_id): the same fact from two chunks is
# two edges, which is what lets a delete remove exactly one document's support.
UPSERT_RELATIONS = """
UNWIND $rows AS r
MATCH (s:Entity {id: r.subject_id})
MATCH (o:Entity {id: r.object_id})
MERGE (s)-[x:RELATES {predicate: r.predicate, chunk_id: r.chunk_id}]->(o)
SET x.doc_id = r.doc_id, x.confidence = r.confidence, x.judge_score = r.judge_score,
    x.raw_predicate = r.raw_predicate
"""

UPSERT_PROPOSITIONS = """
UNWIND $rows AS r
MERGE (p:Proposition {id: r.id})
SET p.text = r.text, p.chunk_id = r.chunk_id, p.doc_id = r.doc_id
"""

LINK_PROPOSITIONS_FROM = """
UNWIND $rows AS r
MATCH (p:Proposition {id: r.id})
MATCH (c:Chunk {id: r.chunk_id})
MERGE (p)-[:FROM]->(c)
"""

LINK_PROPOSITIONS_ABOUT = """
UNWIND $rows AS r
UNWIND r.entity_ids AS eid
MATCH (p:Proposition {id: r.id})
MATCH (e:Entity {id: eid})
MERGE (p)-[:ABOUT]->(e)
"""

# --------------------------------------------------------------------------- reads

# Every document, placeholders too (sha256 null: a killed run wrote some of its chunks).
# Every document with its size in the graph, for `kgrag docs list` and delete-by-path.
LIST_DOCUMENTS = """
MATCH (d:Document)
OPTIONAL MATCH (c:Chunk)-[:PART_OF]->(d)
WITH d, count(c) AS chunks
OPTIONAL MATCH (e:Entity)-[:MENTIONED_IN]->(:Chunk)-[:PART_OF]->(d)
RETURN d.id AS id, d.source AS source, d.path AS path, d.title AS title,
       d.sha256 AS sha256, d.ingested_at AS ingested_at, chunks,
       count(DISTINCT e) AS entities
ORDER BY source, id
"""

DOCUMENT_STATES = """
MATCH (d:Document)
RETURN d.id AS id, d.sha256 AS sha256, d.retry_chunks AS retry_chunks
"""

_CHUNK_COLUMNS = (
    "c.id AS id, c.doc_id AS doc_id, c.text AS text, c.start AS start, c.end AS end, "
    "c.position AS position"
)
_ENTITY_COLUMNS = (
    "e.id AS id, e.name AS name, e.type AS type, e.description AS description, "
    "e.aliases AS aliases"
)

GET_CHUNKS = f"""
UNWIND $ids AS cid
MATCH (c:Chunk {{id: cid}})
RETURN {_CHUNK_COLUMNS}
"""

CHUNKS_OF_DOCUMENT = f"""
MATCH (c:Chunk {{doc_id: $doc_id}})
RETURN {_CHUNK_COLUMNS}
ORDER BY c.position, c.start
"""

GET_ENTITIES = f"""
UNWIND $ids AS eid
MATCH (e:Entity {{id: eid}})
RETURN {_ENTITY_COLUMNS}
"""

# Exact name first, then prefix, then shorter names: the likeliest meaning on top.
FIND_ENTITIES = f"""
MATCH (e:Entity)
WHERE any(k IN e.search WHERE k CONTAINS $q)
WITH e, CASE WHEN $q IN e.search THEN 0
             WHEN any(k IN e.search WHERE k STARTS WITH $q) THEN 1 ELSE 2 END AS rank
RETURN {_ENTITY_COLUMNS}
ORDER BY rank, size(e.name), e.id
LIMIT $limit
"""

# count = distinct neighbour entities reachable through that predicate and direction.
RELATION_CANDIDATES = """
MATCH (e:Entity {id: $id})-[r:RELATES]->(o:Entity)
RETURN r.predicate AS predicate, true AS outgoing, count(DISTINCT o) AS n
UNION ALL
MATCH (e:Entity {id: $id})<-[r:RELATES]-(o:Entity)
RETURN r.predicate AS predicate, false AS outgoing, count(DISTINCT o) AS n
"""

# One row per (neighbour, predicate, direction): the best-supported edge of several chunks.
NEIGHBOURS = """
MATCH (e:Entity {id: $id})-[r:RELATES]-(o:Entity)
WHERE $predicate IS NULL OR r.predicate = $predicate
WITH o, r.predicate AS predicate, startNode(r) = e AS outgoing,
     max(r.confidence) AS confidence, min(r.chunk_id) AS chunk_id
RETURN o.id AS id, o.name AS name, o.type AS type, o.description AS description,
       o.aliases AS aliases, predicate, outgoing, chunk_id, confidence
ORDER BY confidence DESC, id, predicate
LIMIT $limit
"""

ENTITY_DOCUMENTS = """
MATCH (:Entity {id: $id})-[:MENTIONED_IN]->(c:Chunk)-[:PART_OF]->(d:Document)
RETURN d.id AS id, d.source AS source, d.title AS title, d.sha256 AS sha256, count(c) AS n
ORDER BY n DESC, title
LIMIT $limit
"""

CHUNKS_MENTIONING = f"""
UNWIND $ids AS eid
MATCH (e:Entity {{id: eid}})-[:MENTIONED_IN]->(c:Chunk)
WITH c, count(DISTINCT e) AS hits
RETURN {_CHUNK_COLUMNS}
ORDER BY hits DESC, c.doc_id, c.position
LIMIT $limit
"""

# The graph as edge lists, for the in-memory PageRank snapshot (paged by SKIP/LIMIT in
# a stable order so a big graph never comes back as one huge result).
MENTION_EDGES = """
MATCH (e:Entity)-[m:MENTIONED_IN]->(c:Chunk)
RETURN e.id AS source, c.id AS target, coalesce(m.count, 1) AS weight
ORDER BY source, target
SKIP $skip LIMIT $limit
"""

SYNONYM_EDGES = """
MATCH (a:Entity)-[s:SYNONYM]->(b:Entity)
RETURN a.id AS source, b.id AS target, s.score AS weight
ORDER BY source, target
SKIP $skip LIMIT $limit
"""

RELATION_EDGES = """
MATCH (a:Entity)-[r:RELATES]->(b:Entity)
RETURN a.id AS source, b.id AS target, coalesce(r.judge_score, r.confidence, 1.0) AS weight
ORDER BY source, target, r.chunk_id, r.predicate
SKIP $skip LIMIT $limit
"""

ENTITY_NAMES = """
MATCH (e:Entity)
RETURN e.id AS id, e.name AS name
ORDER BY id
SKIP $skip LIMIT $limit
"""

CHUNK_IDS = """
MATCH (c:Chunk)
RETURN c.id AS id
ORDER BY id
SKIP $skip LIMIT $limit
"""

PROPOSITION_IDS = """
MATCH (p:Proposition)
RETURN p.id AS id
ORDER BY id
SKIP $skip LIMIT $limit
"""

CHUNK_TEXTS = """
MATCH (c:Chunk)
RETURN c.id AS id, c.text AS text
ORDER BY id
SKIP $skip LIMIT $limit
"""

NODE_COUNTS = """
MATCH (x)
UNWIND labels(x) AS label
RETURN label, count(*) AS n
"""

REL_COUNTS = """
MATCH ()-[r]->()
RETURN type(r) AS type, count(*) AS n
"""

# --------------------------------------------------------------------------- delete

DOC_CHUNK_IDS = """
UNWIND $doc_ids AS did
MATCH (c:Chunk {doc_id: did})
RETURN c.id AS id
"""

# Entities the deleted documents touched: only these can be left unsupported.
DOC_ENTITY_IDS = """
UNWIND $chunk_ids AS cid
MATCH (e:Entity)-[:MENTIONED_IN]->(:Chunk {id: cid})
RETURN DISTINCT e.id AS id
UNION
MATCH (s:Entity)-[r:RELATES]->(o:Entity)
WHERE r.doc_id IN $doc_ids OR r.chunk_id IN $chunk_ids
UNWIND [s.id, o.id] AS id
RETURN DISTINCT id
UNION
UNWIND $doc_ids AS did
MATCH (:Proposition {doc_id: did})-[:ABOUT]->(e:Entity)
RETURN DISTINCT e.id AS id
UNION
UNWIND $chunk_ids AS cid
MATCH (:Proposition {chunk_id: cid})-[:ABOUT]->(e:Entity)
RETURN DISTINCT e.id AS id
"""

CHUNK_DOC_IDS = """
UNWIND $chunk_ids AS cid
MATCH (c:Chunk {id: cid})
RETURN DISTINCT c.doc_id AS id
"""

DELETE_DOC_RELATIONS = """
MATCH (:Entity)-[r:RELATES]->(:Entity)
WHERE r.doc_id IN $doc_ids OR r.chunk_id IN $chunk_ids
WITH r, r.chunk_id AS cid
DELETE r
RETURN count(cid) AS n
"""

DELETE_DOC_PROPOSITIONS = """
MATCH (p:Proposition)
WHERE p.doc_id IN $doc_ids OR p.chunk_id IN $chunk_ids
WITH p, p.id AS id
DETACH DELETE p
RETURN count(id) AS n, collect(id) AS ids
"""

DELETE_CHUNKS = """
UNWIND $chunk_ids AS cid
MATCH (c:Chunk {id: cid})
WITH c, c.id AS id
DETACH DELETE c
RETURN count(id) AS n
"""

# An entity goes when nothing links it to a remaining chunk, fact or proposition.
DELETE_UNSUPPORTED_ENTITIES = """
UNWIND $entity_ids AS eid
MATCH (e:Entity {id: eid})
OPTIONAL MATCH (e)-[m:MENTIONED_IN]->(:Chunk)
WITH e, count(m) AS mentions
WHERE mentions = 0
OPTIONAL MATCH (e)-[r:RELATES]-(:Entity)
WITH e, count(r) AS relations
WHERE relations = 0
OPTIONAL MATCH (e)<-[a:ABOUT]-(:Proposition)
WITH e, count(a) AS propositions
WHERE propositions = 0
WITH e, e.id AS id
DETACH DELETE e
RETURN count(id) AS n, collect(id) AS ids
"""

DELETE_DOCUMENTS = """
UNWIND $doc_ids AS did
MATCH (d:Document {id: did})
WITH d, d.id AS id
DETACH DELETE d
RETURN count(id) AS n
"""

# Bounded batches, so clearing a big graph never needs one huge transaction.
CLEAR_BATCH = """
MATCH (x)
WHERE x:Document OR x:Chunk OR x:Entity OR x:Proposition
WITH x LIMIT $batch
WITH x, 1 AS one
DETACH DELETE x
RETURN count(one) AS n
"""

# --------------------------------------------------------------------------- dialects

# Properties looked up by equality, besides the unique ids.
_LOOKUP_INDEXES = (("Chunk", "doc_id"), ("Proposition", "doc_id"), ("Proposition", "chunk_id"))
# Relationship properties a delete selects by (Neo4j only: FalkorDB scans them).
_RELATION_INDEXES = (("RELATES", "doc_id"), ("RELATES", "chunk_id"))

# Neo4j's find_entities: the full-text index `entity_search` (whitespace analyzer over the
# casefolded search keys) proposes candidates for `$lucene` (see neo4j.lucene_contains);
# the substring test and the ranking are FIND_ENTITIES'.
_NEO4J_FIND_ENTITIES = f"""
CALL db.index.fulltext.queryNodes('entity_search', $lucene) YIELD node AS e
WHERE any(k IN e.search WHERE k CONTAINS $q)
WITH e, CASE WHEN $q IN e.search THEN 0
             WHEN any(k IN e.search WHERE k STARTS WITH $q) THEN 1 ELSE 2 END AS rank
RETURN {_ENTITY_COLUMNS}
ORDER BY rank, size(e.name), e.id
LIMIT $limit
"""


@dataclass(frozen=True)
class Dialect:
    """Where the engines differ: schema DDL and the errors it raises when re-run.

    Everything else above is shared text.
    """

    name: str
    #: Cypher statements that create indexes / constraints.
    schema_statements: tuple[str, ...]
    #: (label, property) pairs that must be unique, when the engine needs a separate
    #: command for them (FalkorDB's GRAPH.CONSTRAINT; Neo4j does it in schema_statements).
    unique_keys: tuple[tuple[str, str], ...] = ()
    #: Substrings of errors that only say "this schema object exists already".
    benign_schema_errors: tuple[str, ...] = ()
    #: find_entities through a full-text index (parameters q, lucene, limit), where the
    #: engine has one; None: FIND_ENTITIES' scan.
    entity_fulltext_lookup: str | None = None

    def is_benign_schema_error(self, message: str) -> bool:
        lowered = message.lower()
        return any(marker in lowered for marker in self.benign_schema_errors)


def _falkor_schema() -> tuple[str, ...]:
    nodes = [f"CREATE INDEX FOR (n:{label}) ON (n.id)" for label in NODE_LABELS]
    lookups = [f"CREATE INDEX FOR (n:{label}) ON (n.{prop})" for label, prop in _LOOKUP_INDEXES]
    return (*nodes, *lookups)


def _neo4j_schema() -> tuple[str, ...]:
    uniques = [
        f"CREATE CONSTRAINT {label.lower()}_id IF NOT EXISTS "
        f"FOR (n:{label}) REQUIRE n.id IS UNIQUE"
        for label in NODE_LABELS
    ]
    lookups = [
        f"CREATE INDEX {label.lower()}_{prop} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})"
        for label, prop in _LOOKUP_INDEXES
    ]
    relations = [
        f"CREATE INDEX {rel.lower()}_{prop} IF NOT EXISTS FOR ()-[r:{rel}]-() ON (r.{prop})"
        for rel, prop in _RELATION_INDEXES
    ]
    fulltext = (
        "CREATE FULLTEXT INDEX entity_search IF NOT EXISTS FOR (n:Entity) ON EACH [n.search] "
        "OPTIONS {indexConfig: {`fulltext.analyzer`: 'whitespace'}}"
    )
    # New indexes fill in the background; the first lookup must not miss entities.
    return (*uniques, *lookups, *relations, fulltext, "CALL db.awaitIndexes(300)")


#: FalkorDB: no constraint DDL in Cypher; indexes first, then `GRAPH.CONSTRAINT CREATE`.
FALKOR = Dialect(
    name="falkordb",
    schema_statements=_falkor_schema(),
    unique_keys=tuple((label, "id") for label in NODE_LABELS),
    benign_schema_errors=("already indexed", "already exists"),
)

#: Neo4j 5: constraints carry their own index; `IF NOT EXISTS` makes them re-runnable;
#: entity lookup goes through a full-text index.
NEO4J = Dialect(
    name="neo4j",
    schema_statements=_neo4j_schema(),
    benign_schema_errors=("equivalent", "already exists"),
    entity_fulltext_lookup=_NEO4J_FIND_ENTITIES,
)

#: The neo4j driver talking to FalkorDB's Bolt listener: FalkorDB's Cypher DDL, and no
#: unique constraints (GRAPH.CONSTRAINT is a Redis command, which Bolt cannot send).
#: The listener reports every error as "An unknown error occurred"; for these fixed,
#: valid index statements that can only mean the index exists.
FALKOR_OVER_BOLT = Dialect(
    name="falkordb-bolt",
    schema_statements=_falkor_schema(),
    benign_schema_errors=("already indexed", "already exists", "an unknown error occurred"),
)
