"""Cleaning before anything costs money: normalise, filter by quality, drop duplicates.

    >>> from ingest.documents import documents_from_texts
    >>> text = "Graphs connect entities through typed relations, which makes them useful."
    >>> result = DocumentCleaner().run(documents_from_texts([text, text], ids=["a", "b"]))
    >>> [d.id for d in result.kept] == [result.kept[0].id], result.dropped[0].reason
    (True, 'exact_duplicate')

Order per document: the same id twice, then quality rules, then exact duplicate, then near
duplicate. The first document of a duplicate group is kept, so the result depends only on
the order of the input. A cleaner remembers what it kept across `run` calls: a corpus
streamed through one cleaner in windows is cleaned as if it were one batch.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.models import Document
from ingest.config import IngestConfig
from ingest.dedup import ExactDuplicateIndex, NearDuplicateIndex
from ingest.normalise import normalise_text, text_sha256
from ingest.quality import QualityFilter
from ingest.records import CleanResult, Dropped, DropReason


class DocumentCleaner:
    """Keeps the documents worth ingesting; records every one it drops, with why.

    `exact` and `near` default to fresh indexes (deduplication within the batch); pass
    indexes already holding stored documents to deduplicate against them as well.
    """

    def __init__(
        self,
        config: IngestConfig | None = None,
        exact: ExactDuplicateIndex | None = None,
        near: NearDuplicateIndex | None = None,
    ) -> None:
        self.config = config or IngestConfig()
        self.quality = QualityFilter(self.config)
        self.exact = exact if exact is not None else ExactDuplicateIndex()
        self.near = near if near is not None else NearDuplicateIndex(self.config)
        self._sources: dict[str, str] = {}  # kept document id -> where it came from

    def run(self, documents: Iterable[Document]) -> CleanResult:
        kept: list[Document] = []
        dropped: list[Dropped] = []
        sources = self._sources
        for doc in documents:
            doc = _normalised(doc)
            reason = self._drop_reason(doc, sources)
            if reason is not None:
                dropped.append(reason)
                continue
            sources[doc.id] = doc.source
            kept.append(doc)
        return CleanResult(kept=kept, dropped=dropped)

    def _drop_reason(self, doc: Document, sources: dict[str, str]) -> Dropped | None:
        def drop(reason: DropReason, detail: str) -> Dropped:
            return Dropped(doc_id=doc.id, source=doc.source, reason=reason, detail=detail)

        if doc.id in sources:
            return drop("duplicate_id", f"id already used by {sources[doc.id]}")
        failed = self.quality.run(doc.text)
        if failed is not None:
            return drop(*failed)
        same = self.exact.first_with(doc.sha256, doc.id)
        if same is not None:
            return drop("exact_duplicate", f"exact duplicate of {same}{_at(sources, same)}")
        signature = self.near.signature(doc.text)
        near = self.near.nearest(signature, exclude=doc.id)
        if near is not None:
            other, similarity = near
            return drop(
                "near_duplicate",
                f"near_duplicate of {other}{_at(sources, other)} (jaccard~{similarity:.2f})",
            )
        self.exact.add(doc.sha256, doc.id)
        self.near.add(doc.id, signature)
        return None


def _normalised(doc: Document) -> Document:
    """The document with normalised text and the hash of it (a no-op for loaded ones)."""
    text = normalise_text(doc.text)
    sha256 = text_sha256(text)
    if text == doc.text and sha256 == doc.sha256:
        return doc
    return doc.model_copy(update={"text": text, "sha256": sha256})


def _at(sources: dict[str, str], doc_id: str) -> str:
    return f" ({sources[doc_id]})" if doc_id in sources else ""
