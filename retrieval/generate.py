"""Answer generation with sentence citations.

The evidence is numbered for the model — chunks as [1], [2], ..., graph facts as [T1],
[T2], ... — and one schema-constrained call returns short sentences, each with the markers
it rests on. Markers map back to chunk ids and triple ids; markers that name no source are
dropped. When the sources do not hold the answer the model sets `cannot_answer` and says
so ("The sources do not say ...") instead of guessing.

    >>> sources = Sources.number([], [])
    >>> sources.resolve(["1", "T9"])
    []
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.answer import Evidence, Fact, Sentence, Triple
from core.llm.base import ChatModel, CompletionRequest, TextSink, complete
from core.nlp import split_sentences
from retrieval import prompts
from retrieval.chunk_rag import ScoredChunk
from retrieval.llm_json import call_json

_MARKER = re.compile(r"\[\s*((?:T\s*)?\d+)\s*\]", re.IGNORECASE)
_CITATION_TOKEN = re.compile(r"(?:chk|tri)_[0-9a-f]{16}|[Tt]\s*\d+|\d+")
_WH = ("who", "whom", "whose", "what", "which", "when", "where", "why", "how")


@dataclass
class Sources:
    """The numbered evidence shown to the generator, and the way back from markers."""

    evidence: list[Evidence] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)

    @classmethod
    def number(cls, chunks: Sequence[ScoredChunk], triples: Sequence[Triple]) -> Sources:
        evidence = [Evidence(id=c.chunk.id, doc_id=c.chunk.doc_id, text=c.chunk.text,
                             score=round(c.score, 4), marker=str(i + 1), source=c.source)
                    for i, c in enumerate(chunks)]
        seen: dict[str, Triple] = {}
        for t in triples:
            seen.setdefault(t.id, t)
        facts = [Fact(id=tid, marker=f"T{i + 1}", triple=t)
                 for i, (tid, t) in enumerate(seen.items())]
        return cls(evidence, facts)

    @property
    def empty(self) -> bool:
        return not self.evidence and not self.facts

    def render(self, max_chunk_chars: int = 1200) -> str:
        lines = []
        for e in self.evidence:
            text = " ".join(e.text.split())
            if len(text) > max_chunk_chars:
                text = text[:max_chunk_chars].rsplit(" ", 1)[0] + " ..."
            lines.append(f"[{e.marker}] {text}")
        lines += [f"[{f.marker}] {f.triple.text()}" for f in self.facts]
        return "\n".join(lines)

    def by_marker(self) -> dict[str, str]:
        table = {e.marker: e.id for e in self.evidence}
        table.update({f.marker.upper(): f.id for f in self.facts})
        return table

    def resolve(self, markers: Iterable[Any]) -> list[str]:
        """Chunk / triple ids for citation markers ("1", "[2]", "T1", "chk_..."), in order,
        without repeats; markers that name no source are dropped."""
        table = self.by_marker()
        known = set(table.values())
        out: list[str] = []
        for raw in markers:
            for token in _CITATION_TOKEN.findall(str(raw)):
                key = token.replace(" ", "").upper() if not token.startswith(("chk_", "tri_")) \
                    else token
                target = table.get(key) or (key if key in known else None)
                if target and target not in out:
                    out.append(target)
        return out

    def text_of(self, source_id: str) -> str:
        for e in self.evidence:
            if e.id == source_id:
                return e.text
        for f in self.facts:
            if f.id == source_id:
                return f.triple.text()
        return ""


@dataclass
class Generated:
    sentences: list[Sentence]
    cannot_answer: bool = False
    short_answer: str = ""  # the answer alone, a few words (cited: same call; SuRe: winner)
    rationale: list[dict[str, Any]] = field(default_factory=list)  # SuRe: every candidate

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)


SHORT_ANSWER_CHARS = 80

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cannot_answer": {"type": "boolean"},
        # The answer alone, before the sentences that support it: the same call gives a
        # scoreable short answer and the cited explanation.
        "short_answer": {"type": "string", "maxLength": SHORT_ANSWER_CHARS},
        "sentences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string"},
                               "citations": {"type": "array", "items": {"type": "string"}}},
                "required": ["text", "citations"],
            },
        },
    },
    "required": ["cannot_answer", "short_answer", "sentences"],
}

DIRECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}


def refusal(question: str) -> str:
    """ "The sources do not say who ..." for a wh-question, a plain refusal otherwise."""
    q = " ".join(question.strip().rstrip("?").split())
    if q and q.split()[0].casefold() in _WH:
        return prompts.CANNOT_ANSWER.format(what=q[0].lower() + q[1:])
    return "The sources do not answer this question."


def refused(question: str, sentences: Sequence[Sentence]) -> Generated:
    """The answer that says the sources do not answer: the model's own "The sources do not
    ..." sentence when it wrote one, else `refusal(question)`; no citations."""
    first = sentences[0].text if sentences else ""
    text = first if first.lower().startswith("the sources do not") else refusal(question)
    return Generated([Sentence(text=text)], cannot_answer=True)


def parse_sentences(items: Sequence[Any], sources: Sources) -> list[Sentence]:
    """Model sentences -> `Sentence`s: inline [n] markers move into the citations, texts
    with several sentences are split (each keeps the item's citations)."""
    out: list[Sentence] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        text = str(item.get("text", "")).strip()
        cited = item.get("citations") or []
        listed = sources.resolve(cited if isinstance(cited, list) else [cited])
        for clean, markers in split_cited(text):
            inline = sources.resolve(markers)
            if clean:
                out.append(Sentence(text=clean, citations=list(dict.fromkeys(inline + listed))))
    return out


def split_cited(text: str) -> list[tuple[str, list[str]]]:
    """Sentences of a text with inline [n] markers, each with its markers: the markers are
    taken out before splitting (a splitter may cut inside "[1].") and go to the sentence
    they stood in ("Warsaw [1]. She ..." -> ("... Warsaw.", ["1"]), ("She ...", []))."""
    clean_parts: list[str] = []
    at: list[tuple[int, str]] = []  # (offset in the clean text, marker)
    pos = 0
    length = 0
    for m in _MARKER.finditer(text):
        piece = text[pos:m.start()]
        clean_parts.append(piece)
        length += len(piece)
        at.append((max(0, length - 1), m.group(1)))
        pos = m.end()
    clean_parts.append(text[pos:])
    clean = "".join(clean_parts)
    out: list[tuple[str, list[str]]] = []
    start = 0
    for sentence in split_sentences(clean, keep_whitespace=True) or [clean]:
        end = start + len(sentence)
        markers = [mk for off, mk in at if start <= off < end]
        words = " ".join(sentence.split()).replace(" .", ".").replace(" ,", ",")
        if words:
            out.append((words, markers))
        elif out and markers:
            out[-1][1].extend(markers)
        start = end
    return out


def short_answer(data: dict[str, Any], sentences: Sequence[Sentence]) -> str:
    """The model's short answer, cleaned ("Answer: Delhi." -> "Delhi"); when it left it
    empty, the first sentence if that is short."""
    text = " ".join(_MARKER.sub("", str(data.get("short_answer") or "")).split())
    text = re.sub(r"^(?:the\s+)?(?:short\s+)?answer\s*(?:is)?\s*[:\-]\s*", "", text,
                  flags=re.IGNORECASE).strip().rstrip(".")
    if not text and sentences and len(sentences[0].text.split()) <= 6:
        text = sentences[0].text.rstrip(".")
    return text[:SHORT_ANSWER_CHARS]


_ANSWER_LINE = re.compile(r"^\W*(?:short\s+)?answer\s*[:\-]\s*(.*)$", re.IGNORECASE)
_UNKNOWN = {"unknown", "none", "n/a", "not stated", "cannot answer", "no answer"}
#: Budget of a lines-format answer: the short answer and three cited sentences.
LINES_MAX_TOKENS = 160


def parse_answer_lines(text: str, sources: Sources) -> tuple[str, list[Sentence], bool]:
    """A lines-format reply -> (short answer, cited sentences, cannot_answer). A reply
    without an "Answer:" line is all sentences; a reply cut off mid-sentence keeps it."""
    short, body = "", list[str]()
    for line in text.strip().splitlines():
        m = _ANSWER_LINE.match(line.strip())
        if m and not short and not body:
            short = _MARKER.sub("", m.group(1)).strip().rstrip(".")
        elif line.strip():
            body.append(line.strip())
    sentences = [Sentence(text=clean, citations=sources.resolve(markers))
                 for clean, markers in split_cited(" ".join(body))]
    said_none = bool(sentences) and sentences[0].text.lower().startswith("the sources do not")
    cannot = short.casefold() in _UNKNOWN or said_none
    return short[:SHORT_ANSWER_CHARS], sentences, cannot


_REFUSAL = re.compile(r"^\W*(?:the\s+)?(?:sources?|passages?|text|context)\s+(?:do|does)\s+"
                      r"not|^\W*(?:unknown|not\s+(?:stated|mentioned|given|provided))\b",
                      re.IGNORECASE)
#: Budgets of a short-first answer's calls: the answer alone, then one cited sentence (asked
#: for "one or two sentences", the 0.5B model wrote a median 144 tokens on 20 HaluEval
#: questions and decoding them took longer than the whole plain recipe).
SHORT_MAX_TOKENS = 32
SUPPORT_MAX_TOKENS = 64


def clean_short(text: str) -> str:
    """The first line of a short-answer reply, without an "Answer:" label, markers or a
    final full stop."""
    line = next((x for x in text.strip().splitlines() if x.strip()), "")
    line = _ANSWER_LINE.sub(r"\1", line.strip()) if _ANSWER_LINE.match(line.strip()) else line
    return " ".join(_MARKER.sub("", line).split()).rstrip(".")[:SHORT_ANSWER_CHARS]


class _AfterLine:
    """A `TextSink` that keeps `line` in front of what follows: on a restart of the second
    call the answer line is written again."""

    def __init__(self, sink: TextSink, line: str) -> None:
        self.sink, self.line = sink, line
        sink.write(line)

    def write(self, delta: str) -> None:
        self.sink.write(delta)

    def restart(self) -> None:
        self.sink.restart()
        self.sink.write(self.line)


class AnswerGenerator:
    """Numbered sources in, a short answer and cited sentences out. `output`
    "short-first" (default): the short answer alone in one call, then the sentences that
    support it (inline [n] citations) in a second call on the same prompt, both plain text
    without a grammar; "lines": both in one call ("Answer: ..." then the sentences);
    "json": the one call under a JSON-schema grammar (slower)."""

    def __init__(self, llm: ChatModel, *, max_tokens: int = 384,
                 max_chunk_chars: int = 1200, output: str = "short-first") -> None:
        self.llm = llm
        self.max_tokens = max_tokens
        self.max_chunk_chars = max_chunk_chars
        self.output = output

    def generate(self, question: str, sources: Sources, *, strict: bool = False,
                 stream: TextSink | None = None) -> Generated:
        """Answer from `sources`; `strict` is the regeneration prompt after the verifier
        found unsupported sentences. `stream` gets the model's raw text (the "Answer:"
        line, sentences with their [n] markers) as it is generated; the "json" output is
        not streamed (its raw text is JSON, not an answer to show)."""
        if sources.empty:
            return Generated([Sentence(text=refusal(question))], cannot_answer=True)
        if self.output == "short-first":
            return self._short_first(question, sources, strict, stream)
        if self.output == "lines":
            return self._lines(question, sources, strict, stream)
        system = prompts.ANSWER_SYSTEM + (prompts.ANSWER_STRICT if strict else "")
        user = prompts.ANSWER_USER.format(sources=sources.render(self.max_chunk_chars),
                                          question=question)
        data = call_json(self.llm, system, user, ANSWER_SCHEMA, max_tokens=self.max_tokens,
                         examples=[(prompts.ANSWER_EXAMPLE_USER,
                                    prompts.ANSWER_EXAMPLE_OUTPUT)])
        sentences = parse_sentences(data.get("sentences") or [], sources)
        if data.get("cannot_answer") is True or not sentences:
            return refused(question, sentences)
        return Generated(sentences, short_answer=short_answer(data, sentences))

    def _short_first(self, question: str, sources: Sources, strict: bool,
                     stream: TextSink | None = None) -> Generated:
        messages = [{"role": "system",
                     "content": prompts.SHORT_SYSTEM + (prompts.ANSWER_STRICT if strict else "")},
                    {"role": "user", "content": prompts.SHORT_USER.format(
                        sources=sources.render(self.max_chunk_chars), question=question)}]
        first = complete(self.llm, CompletionRequest.of(
            messages, max_tokens=SHORT_MAX_TOKENS, temperature=0.0, stop=["\n\n"]))
        short = clean_short(first.text)
        if not short or short.casefold() in _UNKNOWN or _REFUSAL.match(short):
            if stream is not None:
                stream.write(refusal(question))
            return refused(question, [])
        follow = [*messages, {"role": "assistant", "content": first.text.strip()},
                  {"role": "user", "content": prompts.SUPPORT_USER}]
        sink = _AfterLine(stream, f"Answer: {short}\n") if stream is not None else None
        text = complete(self.llm, CompletionRequest.of(
            follow, max_tokens=min(self.max_tokens, SUPPORT_MAX_TOKENS), temperature=0.0,
            stop=["\n\n", "\nQuestion:"]), sink).text
        sentences = [Sentence(text=clean, citations=sources.resolve(markers))
                     for clean, markers in split_cited(text)]
        if not sentences or sentences[0].text.lower().startswith("the sources do not"):
            # No supporting sentence: the answer stands as its own sentence, uncited (the
            # verifier checks it against the whole context).
            sentences = [Sentence(text=f"The answer is {short}.")]
        return Generated(sentences, short_answer=short)

    def _lines(self, question: str, sources: Sources, strict: bool,
               stream: TextSink | None = None) -> Generated:
        system = prompts.ANSWER_LINES_SYSTEM + (prompts.ANSWER_STRICT if strict else "")
        user = prompts.ANSWER_LINES_USER.format(sources=sources.render(self.max_chunk_chars),
                                                question=question)
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": prompts.ANSWER_LINES_EXAMPLE_USER},
                    {"role": "assistant", "content": prompts.ANSWER_LINES_EXAMPLE_OUTPUT},
                    {"role": "user", "content": user}]
        request = CompletionRequest.of(messages, max_tokens=min(self.max_tokens,
                                                                LINES_MAX_TOKENS),
                                       temperature=0.0, stop=["\n\n", "\nQuestion:"])
        short, sentences, cannot = parse_answer_lines(complete(self.llm, request, stream).text,
                                                      sources)
        if cannot or not sentences:
            return refused(question, sentences)
        return Generated(sentences, short_answer=short or short_answer({}, sentences))

    def direct(self, question: str) -> Generated:
        """No retrieval (Adaptive-RAG route A): the model answers on its own."""
        data = call_json(self.llm, prompts.DIRECT_SYSTEM,
                         prompts.DIRECT_USER.format(question=question), DIRECT_SCHEMA,
                         max_tokens=self.max_tokens)
        text = " ".join(str(data.get("answer", "")).split())
        parts = split_sentences(text) or ["(no answer)"]
        return Generated([Sentence(text=p) for p in parts])
