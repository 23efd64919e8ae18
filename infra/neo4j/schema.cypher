// The uniqueness constraints, lookup indexes and the entity full-text index kgrag's graph
// needs on Neo4j 5. Same statements as kg/store/cypher.py's NEO4J dialect (a test keeps
// them equal); kgrag also runs them itself when it opens the store, so this only saves the
// first writer the wait. Safe to re-run (IF NOT EXISTS).
CREATE CONSTRAINT document_id IF NOT EXISTS FOR (n:Document) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT chunk_id IF NOT EXISTS FOR (n:Chunk) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT proposition_id IF NOT EXISTS FOR (n:Proposition) REQUIRE n.id IS UNIQUE;
CREATE INDEX chunk_doc_id IF NOT EXISTS FOR (n:Chunk) ON (n.doc_id);
CREATE INDEX proposition_doc_id IF NOT EXISTS FOR (n:Proposition) ON (n.doc_id);
CREATE INDEX proposition_chunk_id IF NOT EXISTS FOR (n:Proposition) ON (n.chunk_id);
CREATE INDEX relates_doc_id IF NOT EXISTS FOR ()-[r:RELATES]-() ON (r.doc_id);
CREATE INDEX relates_chunk_id IF NOT EXISTS FOR ()-[r:RELATES]-() ON (r.chunk_id);
CREATE FULLTEXT INDEX entity_search IF NOT EXISTS FOR (n:Entity) ON EACH [n.search] OPTIONS {indexConfig: {`fulltext.analyzer`: 'whitespace'}};
CALL db.awaitIndexes(300);
