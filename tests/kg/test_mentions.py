"""The mention layer's NER pass (real spaCy pipeline from the PyPI wheel)."""

from __future__ import annotations

from collections.abc import Sequence

from core.models import Chunk, entity_id
from core.nlp import get_text_analyser, split_sentences
from core.protocols import TextAnalysis
from kg.mentions import MentionExtractor


def chunk(text: str, n: int = 0) -> Chunk:
    return Chunk(id=f"chk_{n:016x}", doc_id="doc_1", text=text, start=0, end=len(text),
                 position=n)


class FailsOnBoom:
    """spaCy, except that it raises on any batch holding the text "BOOM"."""

    model_name = "test"

    def analyse(self, texts: Sequence[str]) -> list[TextAnalysis]:
        if any("BOOM" in t for t in texts):
            raise RuntimeError("cannot parse")
        return get_text_analyser().analyse(texts)

    def sentences(self, text: str) -> list[str]:
        return split_sentences(text, keep_whitespace=True)


def test_entities_and_counts_per_chunk() -> None:
    layer = MentionExtractor(get_text_analyser()).run([
        chunk("Marie Curie was born in Warsaw. Marie Curie later moved to Paris.", 0),
        chunk("The Radium Institute's first director was Marie Curie.", 1)])
    counts = {(m.entity_id, m.chunk_id): m.count for m in layer.mentions}
    assert counts[(entity_id("Marie Curie"), chunk("", 0).id)] == 2
    assert counts[(entity_id("Marie Curie"), chunk("", 1).id)] == 1
    names = {e.name: e.type for e in layer.entities}
    assert names["Marie Curie"] == "PERSON" and names["Warsaw"] == "GPE"
    assert "Radium Institute" in names  # "the ... 's" stripped from the name
    assert not layer.failed


def test_a_chunk_spacy_fails_on_is_recorded_and_the_rest_lands() -> None:
    chunks = [chunk("Marie Curie was born in Warsaw.", 0), chunk("BOOM", 1),
              chunk("Pierre Curie was born in Paris.", 2)]
    layer = MentionExtractor(FailsOnBoom()).run(chunks)
    assert [cid for cid, _ in layer.failed] == [chunks[1].id]
    assert "cannot parse" in layer.failed[0][1]
    assert {m.chunk_id for m in layer.mentions} == {chunks[0].id, chunks[2].id}


def test_junk_chunks_give_no_entities_and_no_error() -> None:
    junk = bytes(range(256)).decode("latin-1") * 40
    layer = MentionExtractor(get_text_analyser()).run(
        [chunk("a" * 1_000_000, 0), chunk(junk, 1)])
    assert not layer.failed and not layer.entities
