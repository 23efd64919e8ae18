"""The records of `kgrag evaluate`: the questions file, one scored answer per question and
mode, and the report (JSON + PNG under `<data_dir>/evaluations/`) the CLI and the UI read.

A questions file is JSON Lines, one question a line:

    {"question": "Where was Marie Curie born?", "answer": "Warsaw",
     "sources": ["marie-curie.md", "warsaw.md"]}

`answer` (a string, or a list of acceptable answers) and `sources` (the file names of the
documents that support the answer) are optional; `id` is allowed and ignored. A line that
is not such an object is reported with its number and the reason; the others are scored.

    >>> questions, bad = parse_questions(['{"question": "Who?", "answer": "Ada"}', '{"q": 1}'])
    >>> questions[0].answers, bad[0].line
    (('Ada',), 2)
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import KgragError
from core.settings import Settings
from retrieval.scoring import exact_match, f1

FIELDS = ("question", "answer", "sources", "id")


@dataclass(frozen=True)
class Question:
    """One line of the questions file; `line` is its 1-based line number."""

    line: int
    question: str
    answers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadLine:
    """A line of the questions file that was not scored, and why."""

    line: int
    error: str


def read_questions(path: Path) -> tuple[list[Question], list[BadLine]]:
    """The questions of a JSONL file, and the lines that are not questions."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KgragError(f"no such questions file: {path}",
                         hint="name a JSONL file, one {\"question\": ...} a line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KgragError(f"cannot read {path}: {exc}", hint="save it as UTF-8 text") from None
    return parse_questions(text.splitlines())


def parse_questions(lines: Iterable[str]) -> tuple[list[Question], list[BadLine]]:
    questions: list[Question] = []
    bad: list[BadLine] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = parse_line(number, line)
        except ValueError as exc:
            bad.append(BadLine(number, str(exc)))
            continue
        if q.question in seen:
            bad.append(BadLine(number, f"the same question as line {seen[q.question]}"))
            continue
        seen[q.question] = number
        questions.append(q)
    return questions, bad


def parse_line(number: int, line: str) -> Question:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object: write {\"question\": \"...\", ...}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field {', '.join(map(repr, unknown))}: the fields are "
                         f"{', '.join(FIELDS)}")
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError('no "question" (a non-empty string)')
    return Question(number, " ".join(question.split()),
                    _strings(data.get("answer"), "answer"), _strings(data.get("sources"),
                                                                     "sources"))


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError(f'"{name}" must be a string or a list of strings')
    return tuple(v.strip() for v in items if v.strip())


# ------------------------------------------------------------------------------ rows


@dataclass
class Row:
    """One question answered in one mode: what the answer said and cited, its scores
    against the gold (None where there is no gold), and its cost. `error`: the answer
    failed (a re-run tries it again)."""

    line: int
    question: str
    mode: str
    route: str = ""
    answer: str = ""
    short_answer: str = ""
    cannot_answer: bool = False
    gold_answers: list[str] = field(default_factory=list)
    gold_sources: list[str] = field(default_factory=list)
    cited_sources: list[str] = field(default_factory=list)
    retrieved_sources: list[str] = field(default_factory=list)
    em: float | None = None
    f1: float | None = None
    support_recall: float | None = None  # gold sources the answer cites
    citation_precision: float | None = None  # cited sources that are gold sources
    retrieval_recall: float | None = None  # gold sources among the evidence it was given
    grounding: float | None = None  # the verifier's score of the weakest checked sentence
    supported: float | None = None  # share of checked sentences the verifier supported
    llm_calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str = ""

    def scored(self, q: Question) -> Row:
        """This row with its scores against `q`'s gold answers and sources."""
        said = self.short_answer or self.answer
        self.line, self.gold_answers, self.gold_sources = q.line, list(q.answers), \
            list(q.sources)
        self.em = max(exact_match(said, g) for g in q.answers) if q.answers else None
        self.f1 = round(max(f1(said, g) for g in q.answers), 4) if q.answers else None
        self.support_recall = source_recall(q.sources, self.cited_sources)
        self.citation_precision = source_precision(q.sources, self.cited_sources)
        self.retrieval_recall = source_recall(q.sources, self.retrieved_sources)
        return self

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def source_matches(gold: str, source: str) -> bool:
    """A gold source names a document by its file name ("warsaw.md") or a longer tail of
    its path ("samples/warsaw.md")."""
    gold, source = gold.replace("\\", "/"), source.replace("\\", "/")
    return source == gold or source.endswith("/" + gold)


def source_precision(gold: Sequence[str], cited: Sequence[str]) -> float | None:
    """Share of the cited sources that are gold sources (None without gold sources or
    without citations): a document-level proxy for "the citation backs the sentence"."""
    if not gold or not cited:
        return None
    return round(sum(any(source_matches(g, s) for g in gold) for s in cited) / len(cited), 4)


def source_recall(gold: Sequence[str], found: Sequence[str]) -> float | None:
    """Share of the gold sources among `found` (None without gold sources)."""
    if not gold:
        return None
    return round(sum(any(source_matches(g, s) for s in found) for g in gold) / len(gold), 4)


def summarise(rows: Sequence[Row]) -> dict[str, Any]:
    """One mode's figures: scores averaged over the answers that have them, cost per
    question."""
    ok = [r for r in rows if not r.error]

    def mean(values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(sum(present) / len(present), 4) if present else None

    return {
        "questions": len(rows), "errors": len(rows) - len(ok),
        "em": mean(r.em for r in ok), "f1": mean(r.f1 for r in ok),
        "support_recall": mean(r.support_recall for r in ok),
        "citation_precision": mean(r.citation_precision for r in ok),
        "retrieval_recall": mean(r.retrieval_recall for r in ok),
        "grounding": mean(r.grounding for r in ok),
        "supported": mean(r.supported for r in ok),
        "cannot_answer": mean(float(r.cannot_answer) for r in ok),
        "llm_calls": mean(r.llm_calls for r in ok),
        "prompt_tokens": mean(r.prompt_tokens for r in ok),
        "completion_tokens": mean(r.completion_tokens for r in ok),
        "seconds": mean(r.seconds for r in ok),
        "total_seconds": round(sum(r.seconds for r in ok), 3),
    }


# ------------------------------------------------------------------------------ report


def evaluations_dir(settings: Settings) -> Path:
    return settings.data_dir / "evaluations"


def report_name(text: str) -> str:
    """A file-name-safe name ("my questions.jsonl" -> "my-questions")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).stem).strip("-.") or "questions"


@dataclass
class EvaluationReport:
    """A run of the evaluate flow, saved after every answer so that a cut-off run resumes.

    `running`: the run (process `pid`) is still answering; `finished_at`: it answered
    every question in every mode."""

    name: str
    questions_file: str
    modes: list[str]
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    running: bool = True
    pid: int = field(default_factory=os.getpid)
    error: str = ""
    questions: int = 0
    resumed_answers: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    path: str = ""

    def summarise(self) -> None:
        self.summary = {m: summarise([r for r in self.rows if r.mode == m])
                        for m in self.modes}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvaluationReport:
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in names}
        kept["bad_lines"] = [BadLine(**b) for b in data.get("bad_lines", [])]
        kept["rows"] = [Row.from_json(r) for r in data.get("rows", [])]
        return cls(**kept)

    def save(self) -> Path:
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False))
        tmp.replace(path)
        return path

    def resumable(self) -> bool:
        """Cut off before it finished (killed, or stopped by an error)."""
        return self.finished_at is None and not (self.running and _alive(self.pid))


def new_report_path(directory: Path, name: str, started_at: float) -> Path:
    """`<start time>-<name>.json`; a second run of the name in the same second gets
    `<start time>.2-<name>.json`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started_at))
    path, n = directory / f"{stamp}-{name}.json", 1
    while path.exists():
        n += 1
        path = directory / f"{stamp}.{n}-{name}.json"
    return path


def load_reports(directory: Path, name: str = "", limit: int = 20) -> list[EvaluationReport]:
    """Saved reports, newest first (of one `name`, or all); unreadable files are skipped."""
    pattern = f"*-{name}.json" if name else "*.json"
    reports = []
    for f in sorted(directory.glob(pattern), reverse=True):
        try:
            report = EvaluationReport.from_json(json.loads(f.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if name and report.name != name:
            continue
        report.path = str(f)
        reports.append(report)
        if len(reports) >= limit:
            break
    return reports


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------ plot

SCORES = ("em", "f1", "support_recall", "grounding")


def plot_report(report: EvaluationReport, path: Path) -> None:
    """Scores per mode (bars, 0-1) and seconds per question with calls and tokens, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report.summary)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4),
                                      gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(1, len(modes))
    for k, mode in enumerate(modes):
        s = report.summary[mode]
        xs = [i + k * width for i, m in enumerate(SCORES) if s.get(m) is not None]
        left.bar(xs, [s[m] for m in SCORES if s.get(m) is not None], width, label=mode)
    left.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(SCORES))],
                    ["EM", "F1", "support recall", "grounding"])
    left.set_ylim(0, 1)
    left.set_title(f"{report.name}: {report.questions} questions")
    left.legend(fontsize=8)
    seconds = [report.summary[m].get("seconds") or 0.0 for m in modes]
    bars = right.bar(modes, seconds, color="#8fb3de")
    for bar, mode in zip(bars, modes, strict=True):
        s = report.summary[mode]
        tokens = (s.get("prompt_tokens") or 0) + (s.get("completion_tokens") or 0)
        right.annotate(f"{s.get('llm_calls') or 0:.1f} calls\n{tokens:.0f} tokens",
                       (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                       ha="center", va="bottom", fontsize=8)
    right.set_ylabel("seconds per question")
    right.set_ylim(0, max([*seconds, 0.1]) * 1.35)
    right.set_title("cost per question")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
