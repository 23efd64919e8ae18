"""Typed records shared by every stage (declared once, as in nano-graphrag's base.py).

Ids are content hashes, so writing the same thing twice is a no-op (idempotent MERGE).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def content_id(prefix: str, *parts: str | int) -> str:
    """Stable id: `prefix` + first 16 hex chars of sha256 over the parts."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}_{h[:16]}"


def normalise_name(name: str) -> str:
    """Canonical key of an entity name: NFKC, casefolded, punctuation and spaces squashed."""
    s = unicodedata.normalize("NFKC", name).casefold()
    s = re.sub(r"[^\w]+", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def entity_id(name: str, type_: str = "") -> str:
    """Entity id from its normalised name (type is not part of the id: resolution merges)."""
    return content_id("ent", normalise_name(name))


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Document(Record):
    """A source document. `sha256` is over its cleaned text: unchanged docs are skipped."""

    id: str
    source: str
    title: str = ""
    sha256: str
    text: str = Field(default="", repr=False)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Chunk(Record):
    """A span of a document: `text == document.text[start:end]`."""

    id: str
    doc_id: str
    text: str = Field(repr=False)
    start: int
    end: int
    position: int

    @staticmethod
    def make_id(doc_id: str, start: int, text: str) -> str:
        return content_id("chk", doc_id, start, text)


class Entity(Record):
    id: str
    name: str
    type: str = ""
    description: str = ""
    aliases: tuple[str, ...] = ()


class Mention(Record):
    """Entity -[:MENTIONED_IN {count}]-> Chunk: how often the chunk names the entity."""

    entity_id: str
    chunk_id: str
    count: int = 1


class Synonym(Record):
    """Entity -[:SYNONYM {score}]-> Entity: names whose embeddings are close (cosine)."""

    source_id: str
    target_id: str
    score: float


class Relation(Record):
    """Entity -[:RELATES {predicate, raw_predicate, chunk_id, doc_id, confidence}]-> Entity.
    `predicate` is the canonical form relations merge on (kg.triples.canonical_predicate),
    `raw_predicate` what the extractor wrote ("" when they are the same or unknown)."""

    subject_id: str
    predicate: str
    raw_predicate: str = ""
    object_id: str
    chunk_id: str
    doc_id: str
    confidence: float = 1.0
    judge_score: float | None = None


class Proposition(Record):
    """(:Proposition)-[:FROM]->(:Chunk), (:Proposition)-[:ABOUT]->(:Entity)."""

    id: str
    text: str
    chunk_id: str
    doc_id: str
    entity_ids: tuple[str, ...] = ()

    @staticmethod
    def make_id(chunk_id: str, text: str) -> str:
        return content_id("prp", chunk_id, text)
