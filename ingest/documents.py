"""Documents from text: the one place a `Document` is built, and the Python API.

>>> docs = documents_from_texts(["Paris is the capital of France."], ids=["paris"])
>>> docs[0].id == document_id("paris")
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.models import Document, content_id
from ingest.normalise import normalise_text, normalise_title, text_sha256


def document_id(key: str) -> str:
    """Id of the document whose stable key is `key` (a relative path, or a record's id).

    The key is not the content: a changed file keeps its id and replaces its old version.
    """
    return content_id("doc", key)


def make_document(
    key: str,
    text: str,
    source: str,
    title: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Document:
    """A Document with normalised text, its sha256, and the id of `key`."""
    clean = normalise_text(text)
    return Document(
        id=document_id(key),
        source=source,
        title=normalise_title(title),
        sha256=text_sha256(clean),
        text=clean,
        metadata=dict(metadata or {}),
    )


def documents_from_texts(
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    source: str = "api",
    metadata: Sequence[Mapping[str, Any]] | None = None,
) -> list[Document]:
    """Documents from texts held in memory.

    `ids` are the stable keys (re-sending a text under the same id replaces it); without
    them the key is the text's own hash, so an edited text becomes a new document.
    A text that is empty is still returned: cleaning drops it with reason `empty`.
    """
    for name, values in (("ids", ids), ("titles", titles), ("metadata", metadata)):
        if values is not None and len(values) != len(texts):
            raise ValueError(f"{name} has {len(values)} items for {len(texts)} texts")
    docs = []
    for i, text in enumerate(texts):
        key = ids[i] if ids is not None else text_sha256(normalise_text(text))
        docs.append(
            make_document(
                key,
                text,
                source=f"{source}#{ids[i] if ids is not None else i}",
                title=titles[i] if titles is not None else "",
                metadata=metadata[i] if metadata is not None else None,
            )
        )
    return docs
