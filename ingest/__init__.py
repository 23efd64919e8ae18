"""Ingest stages: corpus in, clean documents and exact-offset chunks out.

One stage per module, each a small class with a `run` method on typed records:

- `loaders.CorpusLoader`: folders, globs, files (.txt .md .html .pdf .jsonl .csv) ->
  `LoadResult`s (a `core.models.Document`, or a per-file `LoadError`);
  `documents.documents_from_texts` for texts already in memory.
- `clean.DocumentCleaner`: normalisation, quality rules (`quality`), exact and near
  duplicates (`dedup`) -> `CleanResult` (kept documents, `Dropped` with reasons).
- `chunking.SentenceChunker`: documents -> `core.models.Chunk`s, sentence-aligned and
  token-budgeted, with `doc.text[c.start:c.end] == c.text`.

All thresholds and sizes are fields of `config.IngestConfig`. Importing this package
imports none of the stages (llama-index alone takes seconds to import).
"""
