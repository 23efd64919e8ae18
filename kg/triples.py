"""Triples from a small model's output, and the checks that keep them out of the graph when
they are not facts of the passage.

The compact output format is one fact per line, `subject | predicate | object` (about 12
tokens a fact, against about 40 in the JSON format with entities, descriptions and
propositions). A reply cut off at max_tokens loses only its last line: every complete line
before it still parses, so a truncated reply is used as it is, never re-sampled.

Every triple, whatever format it came in, then goes through `TripleFilter`:

- coordinated ends are split: "Marie Curie and Pierre Curie" -> two triples, one per
  person, when each part is itself found in the passage (a name the passage writes whole,
  like "Procter & Gamble" or a spaCy mention, is never split);
- an end must be found in the passage (exact or fuzzy span match, rapidfuzz), else the
  triple is dropped as `end not in passage`;
- an end longer than `max_end_words` words is a clause, not a name: dropped as `end too long`.

Each drop is counted by reason, so an ingest can say what it threw away and why.

    >>> triples, malformed = parse_lines("Ada Lovelace | worked with | Charles Babbage\\nnoise")
    >>> triples[0].object, len(triples), malformed
    ('Charles Babbage', 1, 1)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from core.models import normalise_name

#: Reasons a triple is dropped (keys of `TripleFilter.drops`).
MALFORMED = "malformed line"
NOT_IN_PASSAGE = "end not in passage"
TOO_LONG = "end too long"
SELF_LOOP = "same subject and object"
DUPLICATE = "duplicate"
NO_PREDICATE = "empty predicate"

_LEADING = re.compile(r"^(?:(?:is|was|are|were|be|been|being|has been|have been|had been|"
                      r"also|then|later|currently|once|the|a|an)\s+)+")


def canonical_predicate(predicate: str) -> str:
    """The predicate's canonical form, the key relations merge on: lower case, words only,
    leading auxiliaries, adverbs and articles dropped ("was born in", "Born In" and "is
    born in" -> "born in"; "is the capital of" -> "capital of"). A predicate that is
    nothing but such words stays as it is ("is")."""
    words = normalise_name(predicate)
    return _LEADING.sub("", words).strip() or words


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_COORDINATION = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|&)\s+|\s*;\s*", re.IGNORECASE)


@dataclass(frozen=True)
class RawTriple:
    """A triple as the model wrote it (strings, before any entity id is made)."""

    subject: str
    predicate: str
    object: str
    p: int = -1  # index of the proposition it comes from (JSON format), -1: none


def parse_lines(text: str) -> tuple[list[RawTriple], int]:
    """The triples of a `subject | predicate | object` reply, and how many non-empty lines
    were not triples (a line that does not have exactly three non-empty fields)."""
    triples: list[RawTriple] = []
    malformed = 0
    for line in text.splitlines():
        line = _BULLET.sub("", line.strip()).strip("()[]{}` ")
        if not line:
            continue
        parts = [p.strip().strip("\"'") for p in line.split("|")]
        if len(parts) != 3 or not all(parts):
            malformed += 1
            continue
        triples.append(RawTriple(parts[0], parts[1], parts[2]))
    return triples, malformed


@dataclass
class TripleFilter:
    """Splits coordinated ends and drops triples whose ends are not in `passage`.

    `mentions` are names the passage is known to contain whole (the spaCy mention layer);
    they are matched first and never split. `min_similarity` is rapidfuzz's partial ratio
    (0-100) an end needs against the passage when it is not found verbatim.
    """

    passage: str
    mentions: Sequence[str] = ()
    max_end_words: int = 8
    min_similarity: float = 85.0
    drops: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._text = f" {normalise_name(self.passage)} "
        self._mentions = {normalise_name(m) for m in self.mentions if normalise_name(m)}

    def found(self, name: str) -> bool:
        """Whether `name` is written in the passage (normalised; fuzzy for inflections and
        small spelling differences, exact for names of three characters or fewer)."""
        key = normalise_name(name)
        if not key:
            return False
        if key in self._mentions or f" {key} " in self._text:
            return True
        if len(key) <= 3:
            return False
        return fuzz.partial_ratio(key, self._text, score_cutoff=self.min_similarity) > 0

    def split(self, name: str) -> list[str]:
        """`name`, or its coordinated parts when each part is itself in the passage."""
        key = normalise_name(name)
        if key in self._mentions or not _COORDINATION.search(name):
            return [name]
        parts = [p.strip(" .") for p in _COORDINATION.split(name)]
        parts = [p for p in parts if p]
        if len(parts) < 2 or not all(self.found(p) for p in parts):
            return [name]
        return parts

    def apply(self, triples: Iterable[RawTriple]) -> list[RawTriple]:
        """The triples that pass, coordinated ends split, duplicates removed; every other
        triple is counted in `drops` under its reason."""
        out: list[RawTriple] = []
        seen: set[tuple[str, str, str]] = set()
        for t in triples:
            if not normalise_name(t.predicate):
                self.drops[NO_PREDICATE] += 1
                continue
            for s in self.split(t.subject):
                for o in self.split(t.object):
                    reason = self.problem(s, o)
                    key = (normalise_name(s), normalise_name(t.predicate), normalise_name(o))
                    if reason is None and key in seen:
                        reason = DUPLICATE
                    if reason is not None:
                        self.drops[reason] += 1
                        continue
                    seen.add(key)
                    out.append(RawTriple(s, t.predicate, o, t.p))
        return out

    def problem(self, subject: str, obj: str) -> str | None:
        """Why the triple (subject, _, obj) cannot be stored, or None."""
        if max(len(subject.split()), len(obj.split())) > self.max_end_words:
            return TOO_LONG
        if normalise_name(subject) == normalise_name(obj):
            return SELF_LOOP
        if not (self.found(subject) and self.found(obj)):
            return NOT_IN_PASSAGE
        return None
