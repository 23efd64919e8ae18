"""`kgrag distill` as a user runs it: the whole loop at toy scale from the command line.

Real parts: the ingest chunker, the SmolLM2-135M student (LoRA fine-tune on CPU, export,
llama.cpp with the converted adapter), the embedder of the soft match. The one stand-in is
the teacher (`scripted_teacher`, no model): the real local teacher takes 1-2 minutes per
chunk on this machine's 2 shared cores (see tests/kg/test_distill.py for it on one chunk).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from core.llm.testing import ScriptedChatModel
from flows.components import Components
from tests.conftest import LOCAL_MODEL
from tests.corpus import write_corpus
from tests.kg.test_distill import scripted_teacher

runner = CliRunner()

CORPUS = {
    "curie.txt": "Marie Curie was a physicist born in Warsaw. She won the Nobel Prize with "
                 "Pierre Curie.",
    "einstein.txt": "Albert Einstein was born in Ulm. He moved to Princeton in 1933.",
    "danube.txt": "The Danube flows through Vienna. It reaches the Black Sea in Romania.",
    "lovelace.txt": "Ada Lovelace worked with Charles Babbage. She lived in London.",
}


def kgrag(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def scripted_teacher_llm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ScriptedChatModel:
    """Components.llm (the teacher) is `scripted_teacher` inside the real LLM layers."""
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KGRAG_TEST_MODELS_DIR", str(LOCAL_MODEL.parent))
    fake = ScriptedChatModel(default=scripted_teacher, model_name="scripted-teacher")

    def llm(self: Components) -> Any:
        if "_teacher" not in self.__dict__:
            from core.llm.factory import make_chat_model

            self.__dict__["_teacher"] = make_chat_model(self.settings, backend=fake)
        return self.__dict__["_teacher"]

    monkeypatch.setattr(Components, "llm", property(llm))
    from core.settings import get_settings

    get_settings.cache_clear()
    return fake


def test_distill_help_explains_every_stage() -> None:
    code, out, _ = kgrag("distill", "--help")
    assert code == 0
    for stage in ("teacher", "train", "export", "evaluate", "run"):
        assert stage in out
    code, out, _ = kgrag("distill", "run", "--help")
    assert code == 0 and "--json" in out and "--base" in out


def test_train_without_teacher_data_says_what_to_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import ConfigError

    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigError) as exc:
        kgrag("distill", "train", "--workdir", str(tmp_path / "empty"))
    assert "no training examples" in exc.value.message
    assert "kgrag distill teacher" in exc.value.hint


def test_teacher_on_a_missing_path_says_so(tmp_path: Path) -> None:
    code, _, err = kgrag("distill", "teacher", str(tmp_path / "nope"))
    assert code == 2 and "no such file or folder" in err


def test_whole_loop_from_the_cli(scripted_teacher_llm: ScriptedChatModel, tmp_path: Path
                                 ) -> None:
    docs = write_corpus(tmp_path / "docs", CORPUS)
    work = tmp_path / "distill"
    code, out, err = kgrag("distill", "run", str(docs), "--limit", "4", "--validation", "0.5",
                           "--epochs", "2", "--top-layers", "8", "--lr", "2e-3",
                           "--max-tokens", "200",
                           "--workdir", str(work), "--json")
    assert code == 0, err
    s = json.loads(out)
    # teacher: 4 chunks, several calls each, split deterministically
    t = s["teacher"]
    assert t["chunks"] == 4 and t["failed"] == 0 and t["train"] == 2 and t["validation"] == 2
    assert t["per_chunk"]["calls"] == 4.0 == scripted_teacher_llm.calls / 4
    line = json.loads((work / "data" / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant", "user",
                                                     "assistant"]
    # train: the loss is recorded per step and falls as the two examples come round again
    tr = s["train"]
    assert tr["device"] == "cpu" and len(tr["steps"]) == 4
    means = tr["epoch_mean_loss"]
    assert means[-1] < means[0]
    assert (work / "student" / "loss.png").stat().st_size > 1000
    assert (work / "student" / "adapter" / "adapter_model.safetensors").is_file()
    # export: merged weights, the llama.cpp adapter and the serve commands
    ex = s["export"]
    assert (Path(ex["merged_dir"]) / "model.safetensors").is_file()
    assert ex["lora_gguf"] and Path(ex["lora_gguf"]).stat().st_size > 0
    assert "--lora-modules kgrag-extractor=" in ex["serve_commands"]["vllm_lora"]
    # evaluate: student and base scored against the teacher; one call per chunk
    ev = s["evaluate"]
    assert ev["validation_chunks"] == 2
    assert ev["student"]["per_chunk"]["calls"] == 1.0 == ev["base"]["per_chunk"]["calls"]
    assert ev["saving"]["calls_ratio"] == 4.0
    for name in ("student", "base"):
        assert 0.0 <= ev[name]["quality"]["soft"]["f1"] <= 1.0
    report = json.loads((work / "eval" / "report.json").read_text())
    assert report["saving"] == ev["saving"]
