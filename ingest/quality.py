"""Quality heuristics in the spirit of Gopher, FineWeb and Ultra-FineWeb.

Each rule has a name (the `Dropped.reason`) and a threshold in `IngestConfig`; the first
rule a document fails is reported, with the measured value:

    >>> QualityFilter().run("Buy now $$$ cheap deals ### top prices @@@ click %%% for good offers")
    ('symbol_ratio', 'symbol-to-word ratio 0.286 > 0.1')
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from ingest.config import IngestConfig
from ingest.records import DropReason

# A word is a run of letters/digits; each CJK character counts as one (CJK has no spaces).
_WORD = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+(?:['\u2019][^\W_]+)*"
)
# Tokens without letters or digits that ordinary prose and Markdown use.
_PROSE_SYMBOLS = frozenset({"-", "\u2013", "\u2014", "|", "&", "/", "+", "=", "*", "•", ">"})
# Markdown / list markers opening a line (headings, bullets, quotes).
_LINE_MARKER = re.compile(r"#{1,6}|[-*+•>]|\d+[.)]")
_ALNUM = re.compile(r"[^\W_]")
_LETTER = re.compile(r"[^\W\d_]")
_ELLIPSIS = re.compile(r"\.\.\.|…")
_LINE_END_PUNCTUATION = tuple(".!?…:;\"'\u201d\u2019)]。\uff01\uff1f」』")


@dataclass(frozen=True)
class TextStats:
    """Counts the rules look at, computed once per document."""

    text: str

    @cached_property
    def words(self) -> list[str]:
        return _WORD.findall(self.text)

    @cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.split("\n") if line.strip()]

    @cached_property
    def logical_lines(self) -> list[str]:
        """Lines with hard-wrapped continuations (a line that starts in lower case after
        one that does not end a sentence) joined back to the line they continue."""
        merged: list[str] = []
        for line in self.lines:
            if merged and line[0].islower() and not merged[-1].endswith(_LINE_END_PUNCTUATION):
                merged[-1] = f"{merged[-1]} {line}"
            else:
                merged.append(line)
        return merged

    @cached_property
    def tokens(self) -> list[str]:
        """Whitespace tokens, without the Markdown/list marker that opens a line."""
        tokens: list[str] = []
        for line in self.lines:
            parts = line.split()
            if parts and _LINE_MARKER.fullmatch(parts[0]):
                parts = parts[1:]
            tokens.extend(parts)
        return tokens

    @cached_property
    def symbol_count(self) -> int:
        symbols = sum(1 for t in self.tokens if t not in _PROSE_SYMBOLS and not _ALNUM.search(t))
        return symbols + len(_ELLIPSIS.findall(self.text))

    @cached_property
    def alpha_token_fraction(self) -> float:
        counted = [t for t in self.tokens if t not in _PROSE_SYMBOLS]
        if not counted:
            return 0.0
        return sum(1 for t in counted if _LETTER.search(t)) / len(counted)

    @cached_property
    def duplicate_lines(self) -> tuple[int, int]:
        """(lines repeating an earlier line, characters in those lines)."""
        counts = Counter(self.lines)
        dup_lines = sum(n - 1 for n in counts.values())
        dup_chars = sum(len(line) * (n - 1) for line, n in counts.items())
        return dup_lines, dup_chars


Rule = Callable[[TextStats, IngestConfig], str | None]


def _empty(s: TextStats, cfg: IngestConfig) -> str | None:
    return "no words" if not s.words else None


def _too_few_words(s: TextStats, cfg: IngestConfig) -> str | None:
    n = len(s.words)
    return f"{n} words, fewer than {cfg.min_words}" if n < cfg.min_words else None


def _symbol_ratio(s: TextStats, cfg: IngestConfig) -> str | None:
    ratio = s.symbol_count / max(len(s.tokens), 1)
    if ratio > cfg.max_symbol_word_ratio:
        return f"symbol-to-word ratio {ratio:.3f} > {cfg.max_symbol_word_ratio}"
    return None


def _non_alphabetic(s: TextStats, cfg: IngestConfig) -> str | None:
    fraction = s.alpha_token_fraction
    if fraction < cfg.min_alpha_word_fraction:
        return (
            f"only {fraction:.0%} of words have a letter "
            f"(minimum {cfg.min_alpha_word_fraction:.0%})"
        )
    return None


def _repeated_lines(s: TextStats, cfg: IngestConfig) -> str | None:
    if len(s.lines) < 2:
        return None
    dup_lines, dup_chars = s.duplicate_lines
    line_fraction = dup_lines / len(s.lines)
    char_fraction = dup_chars / max(sum(len(line) for line in s.lines), 1)
    if (
        line_fraction > cfg.max_duplicate_line_fraction
        or char_fraction > cfg.max_duplicate_line_char_fraction
    ):
        return (
            f"{dup_lines} of {len(s.lines)} lines repeat an earlier line "
            f"({line_fraction:.0%} of lines, {char_fraction:.0%} of characters)"
        )
    return None


def _few_punctuated_lines(s: TextStats, cfg: IngestConfig) -> str | None:
    # FineWeb's rule is for web text, one paragraph per line; text files are often
    # hard-wrapped, so it counts logical lines.
    lines = s.logical_lines
    if len(lines) < cfg.min_lines_for_line_filters:
        return None
    ending = sum(1 for line in lines if line.endswith(_LINE_END_PUNCTUATION))
    fraction = ending / len(lines)
    if fraction < cfg.min_punctuated_line_fraction:
        return (
            f"{ending} of {len(lines)} lines end in punctuation "
            f"({fraction:.0%}, minimum {cfg.min_punctuated_line_fraction:.0%})"
        )
    return None


#: Applied in this order; the first failure names the reason.
RULES: tuple[tuple[DropReason, Rule], ...] = (
    ("empty", _empty),
    ("too_few_words", _too_few_words),
    ("symbol_ratio", _symbol_ratio),
    ("non_alphabetic", _non_alphabetic),
    ("repeated_lines", _repeated_lines),
    ("few_punctuated_lines", _few_punctuated_lines),
)


class QualityFilter:
    """Decides whether a text is worth ingesting; `run` returns (reason, detail) or None."""

    def __init__(self, config: IngestConfig | None = None) -> None:
        self.config = config or IngestConfig()

    def run(self, text: str) -> tuple[DropReason, str] | None:
        stats = TextStats(text)
        for reason, rule in RULES:
            detail = rule(stats, self.config)
            if detail is not None:
                return reason, detail
        return None
