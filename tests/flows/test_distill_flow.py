"""`distill_extractor`'s teacher stage on chunks already in the graph store (real embedded
FalkorDB, real ingest; the teacher is the `scripted_teacher` stand-in, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from flows.distill import distill_extractor
from flows.ingest import ingest_corpus
from kg.extract import ChunkContext
from tests.app.test_cli_distill import scripted_teacher_llm  # noqa: F401  (fixture)
from tests.corpus import write_corpus

DOCS = {
    "curie.md": "# Marie Curie\n\nMarie Curie was a physicist born in Warsaw. She won the "
                "Nobel Prize with Pierre Curie.",
    "danube.md": "# Danube\n\nThe Danube flows through Vienna. It reaches the Black Sea.",
}


@pytest.mark.services
def test_teacher_samples_ingested_chunks_with_their_document_titles(
        kgrag_env: Path, scripted_teacher_llm: object, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_DATA_DIR", str(kgrag_env))
    from core.settings import get_settings

    get_settings.cache_clear()
    ingest_corpus([str(write_corpus(tmp_path / "docs", DOCS))], extract=False)
    seen: list[ChunkContext] = []
    import kg.distill.teacher as teacher

    original = teacher.SynthKGTeacher.aexample

    async def spy(self: teacher.SynthKGTeacher, ctx: ChunkContext) -> teacher.TeacherExample:
        seen.append(ctx)
        return await original(self, ctx)

    monkeypatch.setattr(teacher.SynthKGTeacher, "aexample", spy)
    s = distill_extractor(stages=["teacher"], from_graph=True, limit=10,
                          workdir=str(tmp_path / "work"))
    assert s["teacher"]["chunks"] == 2 and s["teacher"]["failed"] == 0
    assert sorted(c.title for c in seen) == ["Danube", "Marie Curie"]
    assert all("Marie Curie" in c.chunk.text or "Danube" in c.chunk.text for c in seen)
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["teacher"]["per_chunk"]["calls"] == 4.0


def test_no_source_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigError) as exc:
        distill_extractor(stages=["teacher"], workdir=str(tmp_path / "work"))
    assert "--from-graph" in exc.value.hint
