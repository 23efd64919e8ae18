"""Export the trained student for serving.

- `adapter/` (written by training): peft `save_pretrained`, what vLLM loads with
  `--enable-lora --lora-modules kgrag-extractor=<dir>` next to the same base model;
- `merged/`: base + adapter merged (`merge_and_unload`), safetensors in bf16, for a plain
  `vllm serve merged/` (no LoRA at serve time);
- `lora.gguf`: the adapter as a llama.cpp LoRA GGUF, for the local backend on the base
  GGUF (`Llama(model_path=<base.gguf>, lora_path="lora.gguf")`), written with the `gguf`
  package the way llama.cpp's `convert_lora_to_gguf.py` writes it: `general.type=adapter`,
  `adapter.type=lora`, `adapter.lora.alpha`, tensors `blk.N.<tensor>.weight.lora_a|b`
  (torch shapes (r, in) and (out, r)), and Q / K rows permuted as the llama converter
  permutes them for its rotary layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from kg.distill.base_models import BaseModelRef

#: transformers projection -> llama.cpp tensor name (llama / qwen2 / mistral families).
GGUF_TENSOR = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
#: model_type -> (llama.cpp architecture, whether Q/K rows are permuted by its converter)
GGUF_ARCH = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False)}


@dataclass
class ExportResult:
    adapter_dir: str
    merged_dir: str
    lora_gguf: str | None
    lora_gguf_error: str | None
    base_gguf: str | None
    serve_commands: dict[str, str]


def export_student(base: BaseModelRef, student_dir: Path, out_dir: Path,
                   served_name: str = "kgrag-extractor") -> ExportResult:
    """Merged weights and (where the architecture allows) a llama.cpp LoRA GGUF."""
    import torch
    from peft import PeftModel

    from kg.distill.student import load_base

    adapter_dir = student_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ConfigError(f"no trained adapter in {adapter_dir}",
                          hint="run `kgrag distill train` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_base(base, "cpu")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged_dir = out_dir / "merged"
    # A GGUF base is de-quantised to plain float weights on load; transformers still marks
    # it "quantized with gguf" and refuses to save it. The weights are ordinary tensors.
    merged.hf_quantizer = None
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.to(torch.bfloat16).save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    config = merged.config
    lora_path, lora_error = out_dir / "lora.gguf", None
    try:
        write_lora_gguf(adapter_dir, config, lora_path)
    except ConfigError as exc:
        lora_path, lora_error = None, exc.message  # type: ignore[assignment]
    result = ExportResult(
        adapter_dir=str(adapter_dir), merged_dir=str(merged_dir),
        lora_gguf=str(lora_path) if lora_path else None, lora_gguf_error=lora_error,
        base_gguf=str(base.gguf_path) if base.gguf_path else None,
        serve_commands=serve_commands(base, adapter_dir, merged_dir, lora_path, served_name))
    (out_dir / "export.json").write_text(json.dumps(asdict(result), indent=2) + "\n",
                                         encoding="utf-8")
    return result


def serve_commands(base: BaseModelRef, adapter_dir: Path, merged_dir: Path,
                   lora_gguf: Path | None, served_name: str) -> dict[str, str]:
    """The exact commands that serve the student, and the settings that point kgrag at it."""
    hf_base = base.source if not base.gguf_file else "<the base model's HF id or directory>"
    cmds = {
        "vllm_lora": f"vllm serve {hf_base} --enable-lora --max-lora-rank 64 "
                     f"--lora-modules {served_name}={adapter_dir}",
        "vllm_merged": f"vllm serve {merged_dir} --served-model-name {served_name}",
        "kgrag_settings": "KGRAG_LLM_BACKEND=openai KGRAG_LLM_BASE_URL=http://127.0.0.1:8000/v1 "
                          f"KGRAG_LLM_MODEL={served_name}",
    }
    if lora_gguf is not None and base.gguf_path is not None:
        cmds["llama_cpp"] = (f"python -m llama_cpp.server --model {base.gguf_path} "
                             f"--lora_path {lora_gguf} --model_alias {served_name}")
    return cmds


def _lora_pairs(adapter_dir: Path) -> Iterator[tuple[int, str, Any, Any]]:
    """(layer, projection, lora_A, lora_B) of every adapted module."""
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    for name, a in sorted(weights.items()):
        if ".lora_A." not in name:
            continue
        b = weights[name.replace(".lora_A.", ".lora_B.")]
        module = name.split(".lora_A.")[0]  # ...model.layers.3.self_attn.q_proj
        parts = module.split(".")
        layer = int(parts[parts.index("layers") + 1])
        yield layer, ".".join(parts[-2:]), a, b


def _permute_rows(w: Any, n_head: int) -> Any:
    """llama.cpp's `LlamaModel.permute` on the output rows (for Q and K)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_lora_gguf(adapter_dir: Path, config: Any, path: Path) -> Path:
    """Write the peft adapter in `adapter_dir` as a llama.cpp LoRA GGUF at `path`."""
    import gguf

    adapter_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    model_type = getattr(config, "model_type", "")
    if model_type not in GGUF_ARCH:
        raise ConfigError(f"no llama.cpp LoRA conversion for model type {model_type!r}",
                          hint=f"serve the adapter or merged weights with vLLM; GGUF LoRA "
                          f"export knows {', '.join(GGUF_ARCH)}")
    arch, permute = GGUF_ARCH[model_type]
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(adapter_cfg["lora_alpha"]))
    count = 0
    for layer, proj, a, b in _lora_pairs(adapter_dir):
        if proj not in GGUF_TENSOR:
            raise ConfigError(f"no llama.cpp tensor for adapted module {proj!r}",
                              hint="train with the default --target-modules")
        a_np, b_np = a.float().numpy(), b.float().numpy()
        if permute and proj == "self_attn.q_proj":
            b_np = _permute_rows(b_np, n_head)
        elif permute and proj == "self_attn.k_proj":
            b_np = _permute_rows(b_np, n_kv)
        stem = f"blk.{layer}.{GGUF_TENSOR[proj]}.weight"
        writer.add_tensor(f"{stem}.lora_a", a_np.astype("float32"))
        writer.add_tensor(f"{stem}.lora_b", b_np.astype("float32"))
        count += 1
    if not count:
        raise ConfigError(f"the adapter in {adapter_dir} has no LoRA weights",
                          hint="train again")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
