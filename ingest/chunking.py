"""Sentence-aligned, token-budgeted chunks with exact character offsets.

    >>> from ingest.documents import documents_from_texts
    >>> doc = documents_from_texts(["First sentence. Second one!"], ids=["d"])[0]
    >>> [(c.start, c.end, c.text) for c in SentenceChunker().run([doc])]
    [(0, 27, 'First sentence. Second one!')]

llama-index-core's `SentenceSplitter` chooses the boundaries (paragraphs, then sentences,
then phrases, words, characters; greedy merge up to the budget; overlap carried over).
It is given its two helpers instead of its defaults: a token counter (the default is
tiktoken, whose data file comes from llama-index's bundled cache unless
TIKTOKEN_CACHE_DIR points elsewhere) and a sentence splitter (the default, NLTK punkt,
drops the whitespace before a paragraph's first sentence and may try to download NLTK
data when NLTK_DATA is set). Ours: a regular-expression token counter, and the project's
one sentence splitter (spaCy's `senter` from a PyPI wheel: no network, no characters lost).

The splitter returns strings only, and its own offsets (`start_char_idx`) come from
`str.find` from the previous chunk's start: with repeated text that can land on an
earlier copy. `ChunkSpanLocator` places each chunk instead, using the overlap budget to
tell copies apart, so that `doc.text[c.start:c.end] == c.text` always holds.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from core.models import Chunk, Document
from core.nlp import split_sentences as nlp_split_sentences
from ingest.config import IngestConfig, TokenizerName

TokenCounter = Callable[[str], Sequence[Any]]

# --- tokens and sentences -------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]")


def regex_tokens(text: str) -> list[str]:
    """Words and single punctuation marks: a tokenizer-free stand-in for model tokens."""
    return _TOKEN.findall(text)


def make_tokenizer(name: TokenizerName) -> TokenCounter:
    if name == "tiktoken":
        from llama_index.core.utils import get_tokenizer

        return get_tokenizer()
    return regex_tokens


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing whitespace (`"".join(split_sentences(t)) == t`), from
    the project's one splitter (spaCy's `senter`, `core.nlp`)."""
    return nlp_split_sentences(text, keep_whitespace=True)


# --- chunker --------------------------------------------------------------------------


class SentenceChunker:
    """Splits documents into `Chunk`s of at most about `chunk_size_tokens` tokens.

    Chunk ids are content hashes (`Chunk.make_id(doc_id, start, text)`): the same text
    chunks to the same ids on every run, and an edited document gets new ids.
    """

    def __init__(self, config: IngestConfig | None = None) -> None:
        self.config = config or IngestConfig()
        self.count_tokens = make_tokenizer(self.config.tokenizer)
        self._splitter = _splitter_class(self.count_tokens)(
            chunk_size=self.config.chunk_size_tokens,
            chunk_overlap=self.config.chunk_overlap_tokens,
            tokenizer=self.count_tokens,
            paragraph_separator="\n\n",  # normalised text has no longer blank runs
            chunking_tokenizer_fn=split_sentences,
        )

    def run(self, documents: Iterable[Document]) -> list[Chunk]:
        return [chunk for doc in documents for chunk in self.chunk(doc)]

    def chunk(self, doc: Document) -> list[Chunk]:
        if not doc.text.strip():
            return []
        locator = ChunkSpanLocator(doc.text, self.count_tokens, self.config.chunk_overlap_tokens)
        spans = [s for piece in self._splitter.split_text(doc.text) if (s := locator.locate(piece))]
        return [
            Chunk(
                id=Chunk.make_id(doc.id, start, doc.text[start:end]),
                doc_id=doc.id,
                text=doc.text[start:end],
                start=start,
                end=end,
                position=position,
            )
            for position, (start, end) in enumerate(spans)
        ]


def _splitter_class(count_tokens: TokenCounter) -> Any:
    """SentenceSplitter counting tokens through a plain closure: it counts every piece it
    considers, and reaching its tokenizer through pydantic's private-attribute lookup
    took ~40% of chunking time. (If llama-index renames `_token_size`, this is only
    slower.)"""
    from llama_index.core.node_parser import SentenceSplitter

    class _SentenceSplitter(SentenceSplitter):
        def _token_size(self, text: str) -> int:
            return len(count_tokens(text))

    return _SentenceSplitter


class ChunkAlignmentError(RuntimeError):
    """A chunk's text does not occur in its document (a splitter bug, never bad input)."""


class ChunkSpanLocator:
    """Places the splitter's chunks, in order, back into the document text.

    A chunk starts after the previous one's start and ends after its end; of the places
    where its text occurs, the first whose overlap with the previous chunk fits the
    overlap budget is taken (the splitter carries over as much as fits). If the text is
    not found verbatim, it is matched ignoring whitespace and the span is taken from the
    document, so `text[start:end]` is the document's own characters either way.
    """

    def __init__(self, text: str, count_tokens: TokenCounter, max_overlap: int) -> None:
        self.text = text
        self._count = count_tokens
        self._max_overlap = max_overlap
        self._prev: tuple[int, int] | None = None
        self._solid: tuple[str, list[int]] | None = None  # text without whitespace

    def locate(self, piece: str) -> tuple[int, int] | None:
        """Span of the next chunk, or None when it lies wholly inside the previous one."""
        piece = piece.strip()
        if not piece:
            return None
        lo = self._prev[0] + 1 if self._prev else 0
        for candidates in (self._verbatim(piece, lo), self._ignoring_space(piece, lo)):
            span, inside = self._choose(candidates)
            if span is not None:
                self._prev = span
                return span
            if inside:
                return None
        raise ChunkAlignmentError(f"chunk not found in its document: {piece[:80]!r}")

    def _choose(self, candidates: Iterator[tuple[int, int]]) -> tuple[tuple[int, int] | None, bool]:
        if self._prev is None:
            return next(candidates, None), False
        prev_end = self._prev[1]
        fallback: tuple[int, int] | None = None
        inside = False
        for start, end in candidates:
            if end <= prev_end:
                inside = True
                continue
            overlap = self.text[start:prev_end] if start < prev_end else ""
            if len(self._count(overlap)) <= self._max_overlap:
                return (start, end), inside
            fallback = fallback or (start, end)
        return fallback, inside

    def _verbatim(self, piece: str, lo: int) -> Iterator[tuple[int, int]]:
        i = self.text.find(piece, lo)
        while i >= 0:
            yield i, i + len(piece)
            i = self.text.find(piece, i + 1)

    def _ignoring_space(self, piece: str, lo: int) -> Iterator[tuple[int, int]]:
        if self._solid is None:
            where = [i for i, ch in enumerate(self.text) if not ch.isspace()]
            self._solid = ("".join(self.text[i] for i in where), where)
        solid, where = self._solid
        needle = "".join(ch for ch in piece if not ch.isspace())
        k = solid.find(needle, bisect_left(where, lo))
        while k >= 0:
            yield where[k], where[k + len(needle) - 1] + 1
            k = solid.find(needle, k + 1)
