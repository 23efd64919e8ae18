"""The Answer record family: what question answering returns to the CLI, the UI and callers.

An `Answer` carries the answer text, its sentences with the evidence each cites and the
verifier's verdict on it, the reasoning paths and search trace of Think-on-Graph, the
evidence chunks, the KALMV diagnosis of each rectify round, and the cost.

    >>> a = Answer(question="Who?", mode="direct", answer="Nobody.")
    >>> a.to_json()["answer"]
    'Nobody.'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import content_id

Mode = Literal["direct", "rag", "tog"]
VerdictLabel = Literal["supported", "unsupported", "unverified"]
DiagnosisLabel = Literal["ok", "retrieval_error", "generation_error"]


class AnswerRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Verdict(AnswerRecord):
    """A grounding verdict on one sentence. `score` is the support probability (None when
    nothing was checked), compared with the grounding threshold; `evidence` the chunk /
    triple ids that support it, best first (what the sentence then cites); `checked` every
    id it was checked against (what the generator cited, and the rest of the context when
    that did not support it)."""

    label: VerdictLabel = "unverified"
    score: float | None = None
    evidence: list[str] = Field(default_factory=list)
    method: str = ""
    checked: list[str] = Field(default_factory=list)


class Sentence(AnswerRecord):
    """One answer sentence; `citations` are chunk ids (`chk_...`) and triple ids (`tri_...`)."""

    text: str
    citations: list[str] = Field(default_factory=list)
    verification: Verdict = Field(default_factory=Verdict)


class Triple(AnswerRecord):
    """One graph fact on a reasoning path, with the chunk it was extracted from."""

    subject: str
    predicate: str
    object: str
    subject_id: str = ""
    object_id: str = ""
    chunk_id: str = ""

    @property
    def id(self) -> str:
        return triple_id(self.subject_id or self.subject, self.predicate,
                         self.object_id or self.object)

    def text(self) -> str:
        return f"{self.subject} {self.predicate} {self.object}"


def triple_id(subject_id: str, predicate: str, object_id: str) -> str:
    return content_id("tri", subject_id, predicate, object_id)


class ReasoningPath(AnswerRecord):
    """A chain of triples from a topic entity, as kept by the beam search, with its score."""

    triples: list[Triple] = Field(default_factory=list)
    score: float = 0.0

    def text(self) -> str:
        return "; ".join(t.text() for t in self.triples)


class EntityRef(AnswerRecord):
    id: str
    name: str
    score: float | None = None


class RelationChoice(AnswerRecord):
    """A candidate relation of a frontier entity, its pruning score, and whether it was kept."""

    entity: str
    predicate: str
    outgoing: bool
    score: float
    kept: bool


class PathChoice(AnswerRecord):
    """A candidate path extension scored in entity pruning."""

    text: str
    entity: str
    score: float
    kept: bool


class SearchStep(AnswerRecord):
    """One depth of the Think-on-Graph beam search, for the UI to draw."""

    depth: int
    frontier: list[EntityRef] = Field(default_factory=list)
    relations: list[RelationChoice] = Field(default_factory=list)
    candidates: list[PathChoice] = Field(default_factory=list)
    kept: list[EntityRef] = Field(default_factory=list)
    sufficient: bool | None = None
    note: str = ""


class Evidence(AnswerRecord):
    """A chunk given to the generator; `marker` is how the prompt numbered it ("1")."""

    id: str
    doc_id: str = ""
    text: str = ""
    score: float = 0.0
    marker: str = ""
    source: str = ""  # "vector" | "graph-path" | "graph-mention"


class Fact(AnswerRecord):
    """A triple given to the generator, numbered "T1", "T2", ..."""

    id: str
    marker: str
    triple: Triple


class Round(AnswerRecord):
    """One generate-and-verify round of the rectify loop (KALMV)."""

    index: int
    action: Literal["answer", "re-retrieve", "regenerate"]
    diagnosis: DiagnosisLabel
    relevance: float = 0.0
    support: float = 0.0
    note: str = ""
    short_answer: str = ""  # what this round answered (the answer keeps the best round's)


class Cost(AnswerRecord):
    llm_calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0
    seconds: float = 0.0
    # Where the seconds went (core.timing): plan, retrieve, generate, verify, and the
    # model's own split (llm prompt eval, llm decode, llm sampling + grammar + wait).
    timings: dict[str, float] = Field(default_factory=dict)


class LinkedEntityRecord(AnswerRecord):
    """A topic entity found in the question: the span, the entity, how it matched."""

    span: str
    id: str
    name: str
    score: float
    via: str


class CandidateRecord(AnswerRecord):
    """A SuRe answer candidate: its candidate-conditioned summary (the rationale), whether
    the summary passed the check, and its wins in the pairwise ranking."""

    answer: str
    summary: str = ""
    valid: bool = False
    wins: int = 0


class Answer(AnswerRecord):
    """What `kgrag ask` and the Python API return."""

    question: str
    mode: Mode
    answer: str = ""
    short_answer: str = ""  # SuRe (answer_method = "sure"): the chosen candidate
    cannot_answer: bool = False
    candidates: list[CandidateRecord] = Field(default_factory=list)  # SuRe's rationale
    sentences: list[Sentence] = Field(default_factory=list)
    paths: list[ReasoningPath] = Field(default_factory=list)
    steps: list[SearchStep] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    topic_entities: list[LinkedEntityRecord] = Field(default_factory=list)
    route: str = ""
    diagnosis: DiagnosisLabel = "ok"
    rounds: list[Round] = Field(default_factory=list)
    cost: Cost = Field(default_factory=Cost)

    @property
    def support(self) -> float:
        """Share of checked sentences the verifier found supported (1.0 if none checked)."""
        checked = [s for s in self.sentences if s.verification.label != "unverified"]
        if not checked:
            return 1.0
        return sum(s.verification.label == "supported" for s in checked) / len(checked)

    @property
    def grounding(self) -> float | None:
        """MiniCheck's answer-level support: the score of the weakest checked sentence."""
        scores = [s.verification.score for s in self.sentences
                  if s.verification.label != "unverified" and s.verification.score is not None]
        return min(scores) if scores else None

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["support"] = round(self.support, 4)
        data["grounding"] = None if self.grounding is None else round(self.grounding, 4)
        for path, raw in zip(self.paths, data["paths"], strict=True):
            for triple, raw_t in zip(path.triples, raw["triples"], strict=True):
                raw_t["id"] = triple.id
        return data
