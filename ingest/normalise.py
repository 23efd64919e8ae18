"""Text normalisation applied to every document before it is hashed, filtered or chunked.

The stored `Document.text` is the normalised text, so chunk offsets and citations point
into exactly what was hashed. `normalise_text` is idempotent.

    >>> normalise_text("ﬁne\\u00a0 print\\r\\n\\n\\n\\nnext\\u200b line ")
    'fine print\\n\\nnext line'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Line and paragraph separators become newlines; tabs become spaces; invisible format
# characters that only break words apart (soft hyphen, zero-width space, word joiner, BOM)
# are removed. Zero-width (non-)joiners stay: some scripts need them.
_TRANSLATION = {
    **{ord(c): "\n" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"},
    ord("\t"): " ",
    **{ord(c): None for c in "\u00ad\u200b\u2060\ufeff\u180e"},
}
# Remaining C0/C1 controls, lone surrogates (invalid in UTF-8) and non-characters.
_UNWANTED = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_PARAGRAPH_GAP = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """NFKC, one kind of newline, no control characters, single spaces, at most one
    blank line between paragraphs, no leading or trailing whitespace on any line."""
    # Removals come before NFKC: removing a character between a base letter and a
    # combining mark would otherwise leave text that a second NFKC pass changes.
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_TRANSLATION)
    text = unicodedata.normalize("NFKC", _UNWANTED.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return _PARAGRAPH_GAP.sub("\n\n", "\n".join(lines)).strip()


def normalise_title(title: str, max_chars: int = 200) -> str:
    """A title on one line, normalised, cut at `max_chars`."""
    return " ".join(normalise_text(title).split())[:max_chars]


def text_sha256(text: str) -> str:
    """Hex sha256 of the UTF-8 bytes of `text` (of the normalised text, for a Document)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
