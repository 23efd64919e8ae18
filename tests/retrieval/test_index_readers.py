"""Readers see what writers save: a load that races a save reads the new generation, and
a long-lived reader (the UI's components) picks up what an ingest in another process saved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from core.settings import get_settings
from flows.components import CHUNK_INDEX, Components
from retrieval.index import FaissVectorIndex
from tests.corpus import CORPUS, write_corpus

KGRAG = str(Path(sys.executable).parent / "kgrag")


def vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def test_a_load_that_races_a_save_reads_the_new_generation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = FaissVectorIndex(tmp_path, 8, "m")
    writer.add(["a", "b"], vectors(2, 0))
    writer.save()
    read_index = faiss.read_index
    saved_meanwhile: list[int] = []

    def save_first(path: str, *args: Any) -> Any:
        if not saved_meanwhile:  # the writer saves (and removes these files) right now
            writer.add(["c"], vectors(1, 1))
            writer.save()
            saved_meanwhile.append(writer.generation)
        return read_index(path, *args)

    monkeypatch.setattr("retrieval.index.faiss_index.faiss.read_index", save_first)
    reader = FaissVectorIndex.load(tmp_path, 8, "m")
    assert reader.generation == saved_meanwhile[0] == 2
    assert sorted(reader.ids()) == ["a", "b", "c"]


@pytest.mark.services
def test_a_long_lived_reader_finds_what_another_process_ingested(
        kgrag_env: Path, tmp_path: Path) -> None:
    def ingest(folder: Path) -> None:
        proc = subprocess.run([KGRAG, "ingest", str(folder), "--no-extract"],
                              env=dict(os.environ), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr

    ingest(write_corpus(tmp_path / "first", {"curie.txt": CORPUS["curie.txt"]}))
    reader = Components.from_settings(get_settings())  # as the UI keeps one
    try:
        dense = reader.retriever("dense")
        assert len(reader.index(CHUNK_INDEX)) == 1
        assert reader.reload_changed_indexes() == []  # nothing new: nothing reloaded

        ingest(write_corpus(tmp_path / "second", {"danube.txt": CORPUS["danube.txt"]}))
        assert reader.reload_changed_indexes() == [CHUNK_INDEX]
        assert reader.retriever("dense") is not dense
        hits = reader.retriever("dense").search("Which river flows through Vienna?", 1).hits
        top = reader.graph.read_query("MATCH (c:Chunk {id: $id}) RETURN c.text AS text",
                                      {"id": hits[0].chunk_id}).rows
        assert "Danube" in str(top[0]["text"])
    finally:
        reader.close()
