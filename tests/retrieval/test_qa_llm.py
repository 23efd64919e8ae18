"""`kgrag ask` with the real local model (Qwen2.5-Coder-0.5B) on a tiny corpus; marked `llm`.

The graph is built by the scripted extractor (fast, deterministic); every QA call — the
ToG stop check, the cited answer, the grounding checks — goes to the real model. The test
asserts the structure and that it finishes, not the wording.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.model_files import assemble_model
from core.settings import load_settings
from flows.components import Components
from tests.conftest import LOCAL_MODEL
from tests.corpus import scripted_extraction
from tests.retrieval.test_qa_cli import ingest, kgrag

pytestmark = [pytest.mark.llm, pytest.mark.services]



@pytest.fixture(scope="session")
def model_path() -> Path:
    return assemble_model(load_settings(), "0.5b", models_dir=LOCAL_MODEL.parent)


def test_ask_with_the_local_model(kgrag_env: Path, tmp_path: Path, model_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from core.llm.factory import make_chat_model
    from core.llm.testing import ScriptedChatModel

    with pytest.MonkeyPatch.context() as mp:  # the scripted extractor builds the graph
        fake = ScriptedChatModel(default=scripted_extraction)
        mp.setattr(Components, "llm", property(
            lambda self: self.__dict__.setdefault(
                "_scripted", make_chat_model(self.settings, backend=fake))))
        ingest(tmp_path / "corpus")
    monkeypatch.setenv("KGRAG_LLM_MODEL_PATH", str(model_path))
    monkeypatch.setenv("KGRAG_LLM_CONTEXT", "2048")
    monkeypatch.setenv("KGRAG_TOG_DEPTH", "2")
    monkeypatch.setenv("KGRAG_VERIFY_MAX_ROUNDS", "0")  # a handful of calls, not a dozen

    code, out, _ = kgrag("ask", "Where was Marie Curie born?", "--mode", "tog", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == "tog" and data["topic_entities"][0]["name"] == "Marie Curie"
    assert data["paths"] and data["evidence"] and data["sentences"]
    known = {e["id"] for e in data["evidence"]} | {f["id"] for f in data["facts"]}
    for s in data["sentences"]:
        assert s["text"]
        assert set(s["citations"]) <= known
        assert s["verification"]["label"] in {"supported", "unsupported", "unverified"}
    assert data["steps"][0]["sufficient"] in (True, False)
    cost = data["cost"]
    assert 2 <= cost["llm_calls"] <= 8 and cost["completion_tokens"] > 0
    assert len(data["rounds"]) == 1
