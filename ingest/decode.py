"""Bytes to text, refusing binary data and bytes no character set decodes cleanly.

Order: a UTF-16/32 byte-order mark, then UTF-8 (with or without BOM), then character-set
detection (charset-normalizer, which trafilatura already depends on). Detection guesses
short Western text as a Central European code page surprisingly often, so cp1252 wins
whenever it decodes about as cleanly as the best guess.
"""

from __future__ import annotations

import codecs
import unicodedata

from ingest.records import LoadErrorKind

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Bytes below 0x20 that text files do contain: tab, newline, vertical tab, form feed, CR, ESC.
_TEXT_CONTROLS = frozenset(b"\t\n\x0b\x0c\r\x1b")
_SNIFF_BYTES = 64 * 1024
#: Above this share of control bytes (other than the usual whitespace) a file is binary.
MAX_CONTROL_BYTE_RATIO = 0.05
#: Above this share of control / private-use / unassigned / replacement characters the
#: decoded text is garbage.
MAX_GARBAGE_CHAR_RATIO = 0.02
#: How much worse (charset-normalizer "chaos") cp1252 may be than the best guess and win.
_CP1252_CHAOS_MARGIN = 0.1


class LoadFailure(Exception):
    """Raised inside a loader for one file; the loader turns it into a `LoadError`."""

    def __init__(self, kind: LoadErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: LoadErrorKind = kind
        self.reason = reason


def check_not_binary(data: bytes) -> None:
    """Raise `LoadFailure("binary")` if the first bytes hold NUL or many control bytes."""
    head = data[:_SNIFF_BYTES]
    nul = head.find(b"\x00")
    if nul >= 0:
        raise LoadFailure("binary", f"binary file (NUL byte at offset {nul}), not text")
    controls = sum(1 for b in head if b < 0x20 and b not in _TEXT_CONTROLS)
    if head and controls / len(head) > MAX_CONTROL_BYTE_RATIO:
        raise LoadFailure(
            "binary", f"binary file ({controls} control bytes in the first {len(head)}), not text"
        )


def decode_bytes(data: bytes) -> str:
    """Decode a text file's bytes, or raise `LoadFailure` (empty, binary, undecodable)."""
    if not data.strip():
        raise LoadFailure("empty", "empty file" if not data else "file holds only whitespace")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked(data.decode(encoding), encoding)
            except UnicodeDecodeError as exc:
                raise LoadFailure("undecodable", f"invalid {encoding}: {exc.reason}") from None
    check_not_binary(data)
    try:
        return data.decode("utf-8-sig")  # also plain UTF-8
    except UnicodeDecodeError:
        pass
    text, encoding = _detect(data)
    return _checked(text, encoding)


def detect_encoding(data: bytes) -> str | None:
    """Best guess of a non-UTF-8 text's character set, or None when nothing fits."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - installed with trafilatura
        return None
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= (
            best.chaos + _CP1252_CHAOS_MARGIN
        ):
            return "cp1252"
    return str(best.encoding)


def _detect(data: bytes) -> tuple[str, str]:
    encoding = detect_encoding(data)
    if encoding is None:
        raise LoadFailure("undecodable", "not UTF-8, and no character set decodes it cleanly")
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        raise LoadFailure("undecodable", f"not UTF-8, nor {encoding}: {exc.reason}") from None


def _checked(text: str, encoding: str) -> str:
    """Refuse decoded text that is mostly control characters or replacement marks."""
    garbage = sum(1 for ch in text if _is_garbage(ch))
    if text and garbage / len(text) > MAX_GARBAGE_CHAR_RATIO:
        raise LoadFailure(
            "undecodable",
            f"decodes as {encoding} only to garbage ({garbage} of {len(text)} characters "
            "are control, unassigned or replacement characters)",
        )
    return text


def _is_garbage(ch: str) -> bool:
    if ch == "\ufffd":
        return True
    category = unicodedata.category(ch)
    if category == "Cc":
        return ch not in "\t\n\x0b\x0c\r\x1b"
    return category in ("Co", "Cn", "Cs")
