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

from datasketch import MinHash, MinHashLSH

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
    """MinHash signatures of word shingles, indexed by LSH at a Jaccard threshold."""

    def __init__(self, config: IngestConfig) -> None:
        self.threshold = config.near_duplicate_threshold
        self.num_perm = config.minhash_num_perm
        self.shingle_words = config.shingle_words
        self._lsh = MinHashLSH(
            threshold=self.threshold, num_perm=self.num_perm, weights=_LSH_WEIGHTS
        )
        self._signatures: dict[str, MinHash] = {}
        self._order: dict[str, int] = {}

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
        scored = [
            (float(signature.jaccard(self._signatures[key])), -self._order[key], key)
            for key in self._lsh.query(signature)
            if key != exclude
        ]
        # Most similar first; among equals the earliest indexed (sets have no stable order).
        passing = [s for s in scored if s[0] >= self.threshold]
        if not passing:
            return None
        similarity, _, key = max(passing)
        return key, similarity

    def add(self, doc_id: str, signature: MinHash) -> None:
        """Index a document (replacing its previous signature)."""
        if doc_id in self._signatures:
            self._lsh.remove(doc_id)
        self._lsh.insert(doc_id, signature)
        self._signatures[doc_id] = signature
        self._order.setdefault(doc_id, len(self._order))

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._signatures

    def __len__(self) -> int:
        return len(self._signatures)
