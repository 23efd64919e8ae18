"""LoRA fine-tune of the student on the teacher's chat-format dataset.

The loss is computed on the assistant turn only (the graph JSON and its end-of-turn
token); the prompt tokens are masked with -100. The device is chosen automatically: CUDA
(bf16) when present, else CPU (fp32). Losses of every step and the validation loss after
each epoch are recorded (`training.json`) and drawn (`loss.png`); the adapter is saved
with peft's `save_pretrained`, ready for vLLM's `--lora-modules`.

    >>> cfg = TrainConfig(epochs=3)                                      # doctest: +SKIP
    >>> result = train_student(base_ref, "data/distill/data", "out", cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, ModelNotFoundError
from kg.distill.base_models import BaseModelRef

Progress = Callable[[int, int], None]  # (steps done, steps total)

#: Attention and MLP projections of llama / qwen2 / mistral-style models.
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    """LoRA and optimiser settings. `max_steps` (> 0) stops early; 0 runs all epochs."""

    epochs: int = 3
    max_steps: int = 0
    learning_rate: float = 1e-3
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    top_layers: int = 0  # > 0: adapt only the last N decoder layers (backward stops there)
    max_length: int = 2048
    grad_accumulation: int = 1
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"


@dataclass
class TrainResult:
    """What a training run did: loss per step, validation loss per epoch, time, where."""

    base: str
    device: str
    examples: int
    skipped_too_long: int
    steps: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    trainable_parameters: int = 0
    adapter_dir: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def first_loss(self) -> float:
        return self.steps[0]["loss"] if self.steps else math.nan

    @property
    def last_loss(self) -> float:
        return self.steps[-1]["loss"] if self.steps else math.nan

    def epoch_means(self) -> list[float]:
        """Mean training loss of each epoch (the same examples, seen again)."""
        by_epoch: dict[int, list[float]] = {}
        for s in self.steps:
            by_epoch.setdefault(int(s["epoch"]), []).append(s["loss"])
        return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["epoch_mean_loss"] = [round(x, 4) for x in self.epoch_means()]
        return out


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU",
                          hint="use --device auto (CPU here) or run on a GPU machine")
    return requested


def load_base(ref: BaseModelRef, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of the base, in fp32 on CPU and bf16 on a GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": ref.gguf_file} if ref.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            ref.source, dtype=torch.bfloat16 if device == "cuda" else torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"transformers could not load the base model {ref.name!r}: "
                                 f"{str(exc).splitlines()[0][:200]}",
                                 hint="pass --base smollm2-135m, a local .gguf or model "
                                 "directory, or a hub id on a machine with network") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer  # type: ignore[arg-type]


def tokenise(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one example: the labels mask everything before the last
    (assistant) turn, so the loss is the student's output only."""
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    if not full.startswith(prompt):
        raise ConfigError("the chat template does not extend the prompt with the answer",
                          hint="use an instruct model whose chat template has a generation "
                          "prompt (add_generation_prompt)")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def read_jsonl(path: Path) -> list[list[dict[str, str]]]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["messages"] for line in lines if line.strip()]


def train_student(base: BaseModelRef, data_dir: Path, out_dir: Path, cfg: TrainConfig,
                  progress: Progress | None = None) -> TrainResult:
    """Fine-tune a LoRA adapter of `base` on `data_dir/train.jsonl`; writes
    `out_dir/adapter/`, `out_dir/training.json` and `out_dir/loss.png`."""
    import torch
    from peft import LoraConfig, get_peft_model

    train = read_jsonl(data_dir / "train.jsonl")
    if not train:
        raise ConfigError(f"no training examples in {data_dir / 'train.jsonl'}",
                          hint="run `kgrag distill teacher` first (or point --workdir at "
                          "a directory that has data/train.jsonl)")
    validation = read_jsonl(data_dir / "validation.jsonl")
    device = pick_device(cfg.device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_base(base, device)
    targets = [t for t in cfg.target_modules
               if any(name.endswith(t) for name, _ in model.named_modules())]
    if not targets:
        raise ConfigError(f"none of the LoRA target modules {cfg.target_modules} is in "
                          f"{base.name}", hint="pass --target-modules with the model's "
                          "projection names")
    n_layers = int(model.config.num_hidden_layers)
    layers = (list(range(max(0, n_layers - cfg.top_layers), n_layers))
              if 0 < cfg.top_layers < n_layers else None)
    model = get_peft_model(model, LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
        layers_to_transform=layers, task_type="CAUSAL_LM", bias="none"))
    encoded = [tokenise(tokenizer, m) for m in train]
    kept = [e for e in encoded if len(e[0]) <= cfg.max_length]
    val_encoded = [e for e in (tokenise(tokenizer, m) for m in validation)
                   if len(e[0]) <= cfg.max_length]
    if not kept:
        raise ConfigError(f"every training example is longer than {cfg.max_length} tokens",
                          hint="raise --max-length or use smaller chunks")
    result = TrainResult(base=base.name, device=device, examples=len(kept),
                         skipped_too_long=len(encoded) - len(kept),
                         trainable_parameters=sum(p.numel() for p in model.parameters()
                                                  if p.requires_grad),
                         config=asdict(cfg))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.learning_rate, weight_decay=0.0)
    total = len(kept) * cfg.epochs // cfg.grad_accumulation
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    total = max(total, 1)
    t0 = time.perf_counter()
    step = 0
    model.train()
    for epoch in range(cfg.epochs):
        order = list(range(len(kept)))
        random.Random(cfg.seed + epoch).shuffle(order)
        for i in range(0, len(order) - cfg.grad_accumulation + 1, cfg.grad_accumulation):
            if step >= total:
                break
            losses = []
            for j in order[i:i + cfg.grad_accumulation]:
                loss = _loss(model, kept[j], device) / cfg.grad_accumulation
                loss.backward()
                losses.append(float(loss.item()))
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            step += 1
            result.steps.append({"step": step, "epoch": epoch, "loss": round(sum(losses), 5),
                                 "seconds": round(time.perf_counter() - t0, 2)})
            if progress is not None:
                progress(step, total)
        if val_encoded:
            result.validation.append({"step": step, "epoch": epoch,
                                      "loss": round(_mean_loss(model, val_encoded, device), 5)})
        if step >= total:
            break
    result.seconds = round(time.perf_counter() - t0, 2)
    adapter_dir = out_dir / "adapter"
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(adapter_dir)
    result.adapter_dir = str(adapter_dir)
    (out_dir / "training.json").write_text(json.dumps(result.to_json(), indent=2) + "\n",
                                           encoding="utf-8")
    plot_losses(result, out_dir / "loss.png")
    return result


def _loss(model: Any, example: tuple[list[int], list[int]], device: str) -> Any:
    """Mean cross-entropy of the answer tokens. Only the answer positions go through the
    LM head (`logits_to_keep`): on CPU the head over a ~700-token prompt is a fifth of
    the step's time, and those logits carry no loss anyway."""
    import torch

    ids, labels = example
    answer = sum(1 for x in labels if x != -100)
    logits = model(input_ids=torch.tensor([ids], device=device),
                   logits_to_keep=answer + 1).logits[0, :-1].float()
    target = torch.tensor(ids[len(ids) - answer:], device=device)
    return torch.nn.functional.cross_entropy(logits, target)


def _mean_loss(model: Any, examples: Sequence[tuple[list[int], list[int]]], device: str
               ) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        losses = [float(_loss(model, e, device).item()) for e in examples]
    model.train()
    return sum(losses) / len(losses)


def plot_losses(result: TrainResult, path: Path) -> None:
    """Training loss per step and validation loss per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot([s["step"] for s in result.steps], [s["loss"] for s in result.steps],
            marker=".", label="train (per step)")
    if result.validation:
        ax.plot([v["step"] for v in result.validation], [v["loss"] for v in result.validation],
                marker="o", label="validation (per epoch)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(f"LoRA student on {result.base} ({result.device}, {result.seconds:.0f} s)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
