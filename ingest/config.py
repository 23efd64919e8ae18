"""Every knob of the ingest stages (loading, cleaning, chunking), in one dataclass.

The fields are flat so that they can later become `Settings` fields (`KGRAG_INGEST_*`)
one for one; until then build it directly:

    >>> cfg = IngestConfig(chunk_size_tokens=256, min_words=0)
    >>> cfg.chunk_overlap_tokens
    50
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from core.errors import ConfigError

TokenizerName = Literal["regex", "tiktoken"]


@dataclass(frozen=True)
class IngestConfig:
    """Thresholds and sizes of loading, quality filtering, deduplication and chunking."""

    # --- loading ------------------------------------------------------------------------
    #: Files bigger than this are refused with a `too_large` error (before being read).
    #: For JSONL/CSV, which are streamed, it limits the text of one record instead.
    max_file_bytes: int = 20 * 1024 * 1024
    #: Field / column holding the text of a JSONL record or CSV row.
    text_field: str = "text"
    #: Field / column holding a record's stable id; a record without it gets `path#line`.
    id_field: str = "id"
    #: Optional field / column holding a record's title.
    title_field: str = "title"
    #: Field delimiter of CSV files.
    csv_delimiter: str = ","
    #: After this many bad records in one JSONL/CSV file, the rest are counted, not listed.
    max_record_errors_per_file: int = 100

    # --- quality filters (in the spirit of Gopher / FineWeb / Ultra-FineWeb) -------------
    #: Documents with fewer words are dropped (`too_few_words`); 0 keeps one-line facts.
    min_words: int = 10
    #: Symbol-only tokens (and ellipses) per token above this are dropped (`symbol_ratio`).
    #: Gopher uses 0.1 for '#' and ellipses.
    max_symbol_word_ratio: float = 0.1
    #: Fraction of tokens with a letter below this is dropped (`non_alphabetic`).
    #: Gopher uses 0.8; lower here so that tables of figures survive.
    min_alpha_word_fraction: float = 0.7
    #: Fraction of lines ending in punctuation below this is dropped
    #: (`few_punctuated_lines`; FineWeb uses 0.12) ...
    min_punctuated_line_fraction: float = 0.12
    #: ... but only for documents with at least this many non-empty lines.
    min_lines_for_line_filters: int = 3
    #: Lines that repeat an earlier line, as a fraction of lines (Gopher: 0.3) ...
    max_duplicate_line_fraction: float = 0.3
    #: ... or of characters (Gopher: 0.2); above either, `repeated_lines`.
    max_duplicate_line_char_fraction: float = 0.2

    # --- deduplication -----------------------------------------------------------------
    #: Estimated Jaccard similarity at or above which a later document is a near duplicate.
    near_duplicate_threshold: float = 0.8
    #: MinHash permutations (more: better estimate, slower).
    minhash_num_perm: int = 128
    #: Words per shingle of the MinHash signature.
    shingle_words: int = 5

    # --- chunking ----------------------------------------------------------------------
    #: Most tokens in one chunk (sentence-aligned where sentences fit).
    chunk_size_tokens: int = 400
    #: Tokens of the previous chunk repeated at the start of the next one.
    chunk_overlap_tokens: int = 50
    #: `regex`: words and punctuation marks count one token each (no files, fast).
    #: `tiktoken`: cl100k_base from the copy bundled in llama-index-core (no download).
    tokenizer: TokenizerName = "regex"

    def __post_init__(self) -> None:
        problems = [p for p in self._problems() if p]
        if problems:
            raise ConfigError(
                "invalid ingest settings: " + "; ".join(problems),
                hint="pass values in the documented ranges to IngestConfig",
            )

    def _problems(self) -> list[str]:
        fractions = [
            f.name
            for f in fields(self)
            if f.name.endswith(("_ratio", "_fraction", "_threshold"))
            and not 0.0 <= getattr(self, f.name) <= 1.0
        ]
        return [
            *(f"{name} must be within [0, 1]" for name in fractions),
            "max_file_bytes must be > 0" if self.max_file_bytes <= 0 else "",
            "min_words must be >= 0" if self.min_words < 0 else "",
            "max_record_errors_per_file must be >= 0"
            if self.max_record_errors_per_file < 0
            else "",
            "min_lines_for_line_filters must be >= 1"
            if self.min_lines_for_line_filters < 1
            else "",
            "minhash_num_perm must be >= 16" if self.minhash_num_perm < 16 else "",
            "shingle_words must be >= 1" if self.shingle_words < 1 else "",
            "chunk_size_tokens must be > 0" if self.chunk_size_tokens <= 0 else "",
            "chunk_overlap_tokens must be >= 0 and < chunk_size_tokens"
            if not 0 <= self.chunk_overlap_tokens < self.chunk_size_tokens
            else "",
            "tokenizer must be 'regex' or 'tiktoken'"
            if self.tokenizer not in ("regex", "tiktoken")
            else "",
            "text_field must not be empty" if not self.text_field else "",
            "csv_delimiter must be one character" if len(self.csv_delimiter) != 1 else "",
        ]
