"""Kill -9 at chosen points: what tests/flows/test_fault_kills.py runs in child processes.

A child is forked from a `multiprocessing` fork server that has imported kgrag once (a
fresh interpreter per kill would cost ~10 s of imports each). It runs one operation
(`ingest` a folder with the scripted extractor, or `delete` a document) on the settings it
is given, counting the calls of each stage below; when the count of `die_at`'s stage
reaches its number the child sends itself SIGKILL: no `finally`, no atexit, no flush, as
when the kernel's OOM killer or a user's `kill -9` ends a run.

Stages (each wraps the real function; the kill comes as the call starts):
- load: a document yielded by the corpus loader
- embed: a batch going into the sentence-transformers model
- extract: a call to the (scripted) LLM
- graph-write: one Cypher write statement (chunks, mentions, facts, documents marked done)
- index-save: an index save between its vector file and its metadata
- delete-graph: the one MULTI/EXEC block of a delete in FalkorDB
- delete-vectors: after the graph's part of a delete, before the vectors'
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Imported here so the fork server loads them once for every child.
import flows.delete
import flows.ingest
import ingest.loaders
import kg.store.falkor
import retrieval.index.faiss_index
from core.embed import SentenceTransformerEmbedder
from core.llm.testing import ScriptedChatModel
from flows.components import Components

STAGES = ("load", "embed", "extract", "graph-write", "index-save", "delete-graph",
          "delete-vectors")


class KillSwitch:
    """Counts stage calls; SIGKILLs this process at `die_at` = (stage, n)."""

    def __init__(self, die_at: tuple[str, int] | None) -> None:
        self.die_at = die_at
        self.counts: Counter[str] = Counter()

    def hit(self, stage: str) -> None:
        self.counts[stage] += 1
        if self.die_at == (stage, self.counts[stage]):
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        real = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.hit(stage)
            return real(*args, **kwargs)

        setattr(owner, name, counted)

    def install(self) -> None:
        real_run = ingest.loaders.CorpusLoader.run

        def run(loader: Any, inputs: Any) -> Any:
            for result in real_run(loader, inputs):
                self.hit("load")
                yield result

        ingest.loaders.CorpusLoader.run = run  # type: ignore[method-assign,assignment]
        self.wrap(SentenceTransformerEmbedder, "embed", "embed")
        self.wrap(ScriptedChatModel, "acomplete", "extract")
        self.wrap(kg.store.falkor.FalkorGraphStore, "_write", "graph-write")
        self.wrap(kg.store.falkor.FalkorGraphStore, "_exec_atomically", "delete-graph")
        self.wrap(retrieval.index.faiss_index, "write_json_atomic", "index-save")
        self.wrap(flows.delete, "remove_vectors", "delete-vectors")


def use_scripted_llm(extraction: Callable[..., str]) -> None:
    """Every Components.llm is the scripted extractor in the real layers (as the
    `scripted_llm` fixture does in-process)."""
    fake = ScriptedChatModel(default=extraction)

    def llm(self: Components) -> Any:
        if "_scripted" not in self.__dict__:
            from core.llm.factory import make_chat_model

            self.__dict__["_scripted"] = make_chat_model(self.settings, backend=fake)
        return self.__dict__["_scripted"]

    Components.llm = property(llm)  # type: ignore[method-assign,assignment]


def run_operation(env: dict[str, str], op: str, arg: str, die_at: tuple[str, int] | None,
                  counts_file: str | None = None) -> None:
    """The child's work: `op` ("ingest" a folder or "delete" a document id) on `env`'s
    settings, through Prefect's API at env["PREFECT_API_URL"]."""
    os.environ.update(env)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from core.settings import get_settings
    from tests.corpus import scripted_extraction

    get_settings.cache_clear()
    switch = KillSwitch(die_at)
    switch.install()
    use_scripted_llm(scripted_extraction)
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        if op == "ingest":
            flows.ingest.ingest_corpus([arg], extract=True)
        else:
            flows.delete.delete_documents([arg])
    if counts_file:
        Path(counts_file).write_text(json.dumps(dict(switch.counts)))
