"""Duplicate detection: exact (sha256 of the normalised text) and near (MinHash LSH).

Both indexes keep what they have seen, so one built from documents already in the store
can be handed to the next batch (`DocumentCleaner(..., exact=..., near=...)`).

    >>> index = NearDuplicateIndex(IngestConfig())
    >>> words = " ".join(f"w{i}" for i in range(100))
    >>> index.add("a", index.signature(words))
    >>> index.nearest(index.signature(words.replace("w50", "changed")))[0]
    'a'
"""

from __future__ import annotations

import re

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from ingest.config import IngestConfig

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_MINHASH_SEED = 1  # fixed: signatures must compare across runs
# LSH band sizes chosen for recall: datasketch's default (equal weight on false positives
# and false negatives) finds only ~40% of pairs at Jaccard 0.8 and ~70% at 0.85 with 128
# permutations; these weights find ~95% and ~99%. Candidates are re-checked against the
# threshold with the MinHash estimate, so false positives only cost a comparison.
_LSH_WEIGHTS = (0.05, 0.95)


class ExactDuplicateIndex:
    """sha256 -> id of the first document seen with that text."""

    def __init__(self) -> None:
        self._by_hash: dict[str, str] = {}

    def first_with(self, sha256: str, doc_id: str) -> str | None:
        """Id of an *other* document with the same text, if one was added."""
        found = self._by_hash.get(sha256)
        return found if found is not None and found != doc_id else None

    def add(self, sha256: str, doc_id: str) -> None:
        self._by_hash.setdefault(sha256, doc_id)


class NearDuplicateIndex:
    """MinHash signatures of word shingles, indexed by LSH at a Jaccard threshold.

    Compact, for corpora streamed through ingest: signatures live in one uint32 matrix
    (512 bytes a document at 128 permutations) and the LSH buckets in an open-addressing
    table of (band hash, row) pairs (~200 bytes a document), instead of datasketch's
    `MinHashLSH` (~7 KB a document: Python sets and byte keys per band).
    """

    def __init__(self, config: IngestConfig) -> None:
        self.threshold = config.near_duplicate_threshold
        self.num_perm = config.minhash_num_perm
        self.shingle_words = config.shingle_words
        self.bands, self.rows = _optimal_param(self.threshold, self.num_perm, *_LSH_WEIGHTS)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._signatures = np.zeros((0, self.num_perm), dtype=np.uint32)
        self._buckets = _BucketTable()

    def signature(self, text: str) -> MinHash:
        """MinHash of the text's word shingles (case-folded; punctuation ignored)."""
        words = _WORD.findall(text.casefold())
        n = self.shingle_words
        shingles = {" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}
        signature = MinHash(num_perm=self.num_perm, seed=_MINHASH_SEED)
        signature.update_batch([s.encode("utf-8") for s in shingles])
        return signature

    def nearest(self, signature: MinHash, exclude: str = "") -> tuple[str, float] | None:
        """The most similar indexed document at or above the threshold, with its
        estimated Jaccard similarity (LSH candidates are re-checked: LSH has false
        positives)."""
        values = signature.hashvalues.astype(np.uint32)
        rows = {row for key in self._band_keys(values) for row in self._buckets.get(key)}
        skip = self._row.get(exclude, -1)
        scored = [
            (float(np.mean(self._signatures[row] == values)), -row, row)
            for row in rows if row != skip
        ]
        # Most similar first; among equals the earliest indexed.
        passing = [s for s in scored if s[0] >= self.threshold]
        if not passing:
            return None
        similarity, _, row = max(passing)
        return self._ids[row], similarity

    def add(self, doc_id: str, signature: MinHash) -> None:
        """Index a document (replacing its previous signature: the old buckets may still
        name its row, which only costs a re-check)."""
        values = signature.hashvalues.astype(np.uint32)
        row = self._row.get(doc_id)
        if row is None:
            row = len(self._ids)
            self._ids.append(doc_id)
            self._row[doc_id] = row
            if row == len(self._signatures):  # grow by half again
                grown = np.zeros((max(64, row + row // 2), self.num_perm), dtype=np.uint32)
                grown[:row] = self._signatures
                self._signatures = grown
        self._signatures[row] = values
        for key in self._band_keys(values):
            self._buckets.add(key, row)

    def _band_keys(self, values: np.ndarray) -> list[int]:
        r = self.rows
        return [hash((band, values[band * r:(band + 1) * r].tobytes()))
                for band in range(self.bands)]

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._row

    def __len__(self) -> int:
        return len(self._ids)


class _BucketTable:
    """A multimap int -> row in two numpy arrays (linear probing; key 0 marks a free slot)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._keys = np.zeros(capacity, dtype=np.uint64)
        self._rows = np.zeros(capacity, dtype=np.int32)
        self._count = 0

    @staticmethod
    def _slot_key(key: int) -> int:
        return (key & 0xFFFF_FFFF_FFFF_FFFF) | 1

    def add(self, key: int, row: int) -> None:
        if 2 * (self._count + 1) > len(self._keys):
            self._grow()
        self._put(self._slot_key(key), row)
        self._count += 1

    def get(self, key: int) -> list[int]:
        k, keys = np.uint64(self._slot_key(key)), self._keys
        mask = len(keys) - 1
        pos, found = int(k) & mask, []
        while keys[pos]:
            if keys[pos] == k:
                found.append(int(self._rows[pos]))
            pos = (pos + 1) & mask
        return found

    def _put(self, k: int, row: int) -> None:
        keys, mask = self._keys, len(self._keys) - 1
        pos = k & mask
        while keys[pos]:
            pos = (pos + 1) & mask
        keys[pos] = k
        self._rows[pos] = row

    def _grow(self) -> None:
        used = self._keys != 0
        old_keys, old_rows = self._keys[used].tolist(), self._rows[used].tolist()
        self._keys = np.zeros(2 * len(self._keys), dtype=np.uint64)
        self._rows = np.zeros(2 * len(self._rows), dtype=np.int32)
        for k, row in zip(old_keys, old_rows, strict=True):
            self._put(k, row)
