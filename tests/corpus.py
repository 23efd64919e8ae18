"""Test helpers: a small corpus on disk and a deterministic scripted extractor (a stand-in
for the LLM, named as such). The `scripted_llm` fixture is registered in tests/conftest.py."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.llm.base import CompletionRequest
from core.llm.testing import ScriptedChatModel
from flows.components import Components

CORPUS = {
    "curie.txt": "Marie Curie was a physicist born in Warsaw. She won the Nobel Prize in "
                 "Physics together with Pierre Curie. Marie Curie later worked in Paris.",
    "einstein.md": "# Albert Einstein\n\nAlbert Einstein was a physicist born in Ulm. He "
                   "developed the theory of relativity. Albert Einstein moved to Princeton "
                   "in 1933.",
    "danube.txt": "The Danube is a river in Europe. The Danube flows through Vienna and "
                  "Budapest before it reaches the Black Sea near Romania.",
}


def write_corpus(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (files or CORPUS).items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def passage_of(request: CompletionRequest) -> str:
    content = request.messages[-1]["content"]
    return content.split('"""')[1].strip()


def scripted_extraction(request: CompletionRequest) -> str:
    """A stand-in extractor (named as such): capitalised names are entities; consecutive
    names in one sentence are related by 'related to'. Deterministic, no model. Answers
    in the format asked for: JSON under a schema, `subject | predicate | object` lines
    otherwise (kg/extract.py)."""
    text = passage_of(request)
    entities: list[str] = []
    triples: list[dict[str, Any]] = []
    props: list[str] = []
    for sentence in re.split(r"(?<=\.)\s+", text):
        names = re.findall(r"(?:[A-Z][a-z]+)(?: [A-Z][a-z]+)*", sentence)
        names = [n.removeprefix("The ") for n in names if n not in {"The", "She", "He"}]
        if not names:
            continue
        props.append(sentence)
        for n in names:
            if n not in entities:
                entities.append(n)
        for a, b in itertools.pairwise(names):
            triples.append({"subject": a, "predicate": "related to", "object": b,
                            "p": len(props) - 1})
    if request.json_schema is None:
        return "\n".join(f"{t['subject']} | {t['predicate']} | {t['object']}" for t in triples)
    return json.dumps({
        "entities": [{"name": n, "type": "Thing", "description": ""} for n in entities],
        "propositions": props, "triples": triples})


def scripted_llm_fixture(monkeypatch: pytest.MonkeyPatch) -> ScriptedChatModel:
    """Every Components.llm is the scripted extractor wrapped in the real layers."""
    fake = ScriptedChatModel(default=scripted_extraction)

    def llm(self: Components) -> Any:
        if "_scripted" not in self.__dict__:
            from core.llm.factory import make_chat_model

            self.__dict__["_scripted"] = make_chat_model(self.settings, backend=fake)
        return self.__dict__["_scripted"]

    monkeypatch.setattr(Components, "llm", property(llm))
    return fake
