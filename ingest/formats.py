"""Text and title out of one file's bytes, per format (plain text, Markdown, HTML, PDF).

Each extractor raises `LoadFailure` for a file it cannot use; none of them normalises
text (the loader does, once, for every format).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from ingest.decode import LoadFailure, decode_bytes
from ingest.normalise import normalise_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extracted:
    """Text of a file, its title if the file names one, and format details."""

    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def extract_plain(data: bytes) -> Extracted:
    return Extracted(decode_bytes(data))


# --- Markdown -------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
_FRONT_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.M)
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.M)
_SETEXT_HEADING = re.compile(r"^([^\n]*\S[^\n]*)\r?\n {0,3}(?:=+|-+)[ \t]*$", re.M)


def extract_markdown(data: bytes) -> Extracted:
    """Markdown is kept as written (chunks cite it); YAML front matter becomes metadata."""
    text = decode_bytes(data)
    title = ""
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        found = _FRONT_TITLE.search(front.group(1))
        title = found.group(1).strip("'\"") if found else ""
    if not title:
        headings = [m for m in (_ATX_HEADING.search(text), _SETEXT_HEADING.search(text)) if m]
        if headings:
            title = min(headings, key=lambda m: m.start()).group(1).strip()
    return Extracted(text, title)


# --- HTML -----------------------------------------------------------------------------

# fmt: off
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th",
    "tr", "ul",
})
# fmt: on
_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})


class _HtmlStripper(HTMLParser):
    """Visible text with line breaks at block elements, and the document's title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.first_h1: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":  # HTML lets </head> be left out
            self._skip_depth = 0
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        self._in_title = self._in_title or tag == "title"
        self._in_h1 = self._in_h1 or (tag == "h1" and not self.first_h1)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS and self._skip_depth:
            self._skip_depth -= 1
        if tag == "title":
            self._in_title = False
        if tag == "h1":
            self._in_h1 = False
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip_depth:
            self.parts.append(data)
            if self._in_h1:
                self.first_h1.append(data)

    @property
    def title(self) -> str:
        return " ".join("".join(self.title_parts or self.first_h1).split())


def extract_html(data: bytes) -> Extracted:
    """Main text by trafilatura (boilerplate removed); a plain tag strip if it finds none."""
    html = decode_bytes(data)
    stripper = _HtmlStripper()
    try:
        stripper.feed(html)
        stripper.close()
    except Exception as exc:  # html.parser is lenient; anything raised means garbage
        raise LoadFailure("corrupt", f"cannot parse HTML: {exc}") from None
    text = _trafilatura_text(html)
    extractor = "trafilatura"
    if not text:
        text, extractor = "".join(stripper.parts), "tag-strip"
    if not normalise_text(text):
        raise LoadFailure("empty", "no visible text in the HTML")
    return Extracted(text, stripper.title, {"extractor": extractor})


def _trafilatura_text(html: str) -> str:
    try:
        import trafilatura

        text = trafilatura.extract(html, include_comments=False, include_tables=True)
    except Exception as exc:  # an extractor failure only costs us the boilerplate removal
        log.debug("trafilatura failed (%s); falling back to a tag strip", exc)
        return ""
    return text or ""


# --- PDF ------------------------------------------------------------------------------


def extract_pdf(data: bytes) -> Extracted:
    """Page texts joined by blank lines; `metadata["page_offsets"]` holds `[page number,
    offset]` of each page with text, offsets into the normalised text (to cite pages)."""
    from pypdf import PdfReader

    if not data.strip():
        raise LoadFailure("empty", "empty file")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadFailure("corrupt", "encrypted PDF (needs a password)")
        pages = list(reader.pages)
    except LoadFailure:
        raise
    except Exception as exc:  # pypdf raises many types for broken files
        raise LoadFailure("corrupt", f"corrupt PDF: {type(exc).__name__}: {exc}") from None
    texts: list[str] = []
    page_offsets: list[list[int]] = []
    failed_pages: list[int] = []
    offset = 0
    for number, page in enumerate(pages, start=1):
        try:
            # Normalised page by page so that page_offsets stay exact after normalising
            # the joined text (normalising the join of normalised pages changes nothing).
            page_text = normalise_text(page.extract_text() or "")
        except Exception:
            failed_pages.append(number)
            continue
        if page_text:
            page_offsets.append([number, offset])
            texts.append(page_text)
            offset += len(page_text) + 2
    if not texts:
        if failed_pages:
            raise LoadFailure("corrupt", f"corrupt PDF: no page could be read ({len(pages)})")
        raise LoadFailure("empty", "no extractable text in the PDF (scanned? OCR is not done)")
    title = _pdf_title(reader)
    metadata: dict[str, Any] = {"pages": len(pages), "page_offsets": page_offsets}
    if failed_pages:
        metadata["failed_pages"] = failed_pages
    return Extracted("\n\n".join(texts), title, metadata)


def _pdf_title(reader: Any) -> str:
    try:
        info = reader.metadata
        return str(info.title or "") if info is not None else ""
    except Exception:  # a broken info dictionary only costs the title
        return ""
