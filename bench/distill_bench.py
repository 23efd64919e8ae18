"""Distillation at bench scale: the real local teacher, the real SmolLM2-135M student.

Documents: short Wikipedia lead sections (`bench/wiki_corpus.py`; 200 to 500 characters,
the first `--docs` of them in the package's order), chunked by the ingest chunker. The
`distill_extractor` flow runs all four stages: the SynthKG teacher on the local GGUF model
(Qwen2.5-Coder-0.5B by default; `--variant 1.5b`), LoRA on SmolLM2-135M on this CPU,
export, and evaluation of student and untuned base against the teacher's triples on the
validation chunks. Teacher replies are cached (`bench/.cache/distill/`), so a re-run
re-trains and re-evaluates without paying the teacher again.

    python bench/distill_bench.py                   # ~15-25 min on 2 busy cores
    python bench/distill_bench.py --docs 12 --epochs 4

Prints a table; writes bench/out/distill.json and bench/out/distill-loss.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.wiki_corpus import wiki_jsonl
from core.model_files import SPECS, assemble_model
from core.settings import get_settings, load_settings
from kg.distill.student import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
CACHE = ROOT / "bench" / ".cache" / "distill"


def short_leads(n: int, low: int = 200, high: int = 500) -> Path:
    """The first `n` leads of low..high characters, as a JSONL corpus."""
    path = CACHE / f"leads-{n}.jsonl"
    rows = []
    for line in wiki_jsonl(limit=500).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if low <= len(rec["text"]) <= high:
            rows.append(rec)
        if len(rows) == n:
            break
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def table(s: dict[str, Any]) -> str:
    ev, tr = s["evaluate"], s["train"]
    te = ev["teacher"]["per_chunk"]
    rows = [("teacher " + ev["teacher"]["name"], "-", "-", "-", te["calls"],
             te["prompt_tokens"] + te["completion_tokens"], "-")]
    for name in ("student", "base"):
        if name in ev:
            m = ev[name]
            q = m["quality"]
            rows.append((name, q["soft"]["f1"], q["strict"]["f1"], q["pair"]["f1"],
                         m["per_chunk"]["calls"],
                         m["per_chunk"]["prompt_tokens"] + m["per_chunk"]["completion_tokens"],
                         m["failed"]))
    head = ("model", "F1 soft", "F1 strict", "F1 pair", "calls/chunk", "tokens/chunk",
            "invalid")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    lines += [" | ".join(str(x) for x in r) for r in rows]
    lines.append(f"\nloss {tr['steps'][0]['loss']} -> {tr['steps'][-1]['loss']} over "
                 f"{len(tr['steps'])} steps (epoch means {tr['epoch_mean_loss']}), "
                 f"validation {[v['loss'] for v in tr['validation']]}, {tr['seconds']} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=6, help="Wikipedia leads (one chunk each).")
    ap.add_argument("--variant", default="0.5b", choices=sorted(SPECS), help="Teacher GGUF.")
    ap.add_argument("--max-propositions", type=int, default=3)
    ap.add_argument("--validation", type=float, default=0.34)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--top-layers", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-tokens", type=int, default=512)
    args = ap.parse_args()

    os.environ["KGRAG_DATA_DIR"] = str(CACHE / "data")
    os.environ["KGRAG_LLM_CACHE"] = "true"
    base = load_settings()
    model = assemble_model(base, args.variant, models_dir=ROOT / "data" / "models")
    os.environ["KGRAG_LLM_MODEL_PATH"] = str(model)
    os.environ["KGRAG_LLM_MODEL"] = SPECS[args.variant].name
    get_settings.cache_clear()
    from flows.distill import distill_extractor

    work = CACHE / "work"
    for stage_dir in ("data", "student", "export", "eval"):
        shutil.rmtree(work / stage_dir, ignore_errors=True)
    summary = distill_extractor(
        sources=[str(short_leads(args.docs))], limit=0, validation_fraction=args.validation,
        max_propositions=args.max_propositions, workdir=str(work),
        train_config=TrainConfig(epochs=args.epochs, top_layers=args.top_layers,
                                 learning_rate=args.lr),
        eval_max_tokens=args.max_tokens)
    OUT.mkdir(parents=True, exist_ok=True)
    summary["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "args": vars(args)}
    (OUT / "distill.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    shutil.copyfile(work / "student" / "loss.png", OUT / "distill-loss.png")
    print(table(summary))
    print(f"stage seconds: {summary['seconds']}")


if __name__ == "__main__":
    main()
