"""The ingest flow on real parts: FalkorDB, FAISS, sentence-transformers, Prefect.

The extractor is the scripted stand-in of tests/corpus.py (deterministic); the real
local model runs in tests/flows/test_ingest_llm.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.embed import SentenceTransformerEmbedder
from core.llm.testing import ScriptedChatModel
from core.settings import get_settings
from flows.components import CHUNK_INDEX, ENTITY_INDEX, PROPOSITION_INDEX, Components
from flows.delete import delete_documents
from flows.ingest import ingest_corpus
from tests.corpus import CORPUS, write_corpus

pytestmark = pytest.mark.services


def snapshot() -> dict[str, Any]:
    """Everything a user could observe: graph contents and vector index contents."""
    c = Components.from_settings(get_settings())
    g = c.graph

    def rows(q: str) -> set[tuple[Any, ...]]:
        return {tuple(r.values()) for r in g.read_query(q, limit=100_000).rows}

    try:
        return {
            "documents": rows("MATCH (d:Document) RETURN d.id, d.sha256"),
            "chunks": rows("MATCH (c:Chunk)-[:PART_OF]->(d:Document) "
                           "RETURN c.id, c.start, c.end, d.id"),
            "next": rows("MATCH (a:Chunk)-[:NEXT]->(b:Chunk) RETURN a.id, b.id"),
            "entities": rows("MATCH (e:Entity) RETURN e.id, e.name"),
            "mentions": rows("MATCH (e:Entity)-[:MENTIONED_IN]->(c:Chunk) RETURN e.id, c.id"),
            "relations": rows("MATCH (s:Entity)-[r:RELATES]->(o:Entity) "
                              "RETURN s.id, r.predicate, o.id, r.chunk_id"),
            "propositions": rows("MATCH (p:Proposition)-[:FROM]->(c:Chunk) RETURN p.id, c.id"),
            "vectors": {name: frozenset(c.index(name).ids())
                        for name in (CHUNK_INDEX, ENTITY_INDEX, PROPOSITION_INDEX)},
        }
    finally:
        c.close()


def test_lexical_ingest_lands_good_files_and_reports_bad_ones(
        kgrag_env: Path, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "empty.txt").write_text("")
    (corpus / "blob.txt").write_bytes(b"\x00\x01\x02 binary \xff")
    (corpus / "broken.jsonl").write_text('{"id": "r1", "text": "' + CORPUS["danube.txt"]
                                         + '"}\n{not json\n')
    s = ingest_corpus([str(corpus)], extract=False)
    failed = {Path(p["where"].split("#")[0]).name: p["kind"] for p in s["failed"]}
    assert failed == {"empty.txt": "empty", "blob.txt": "binary", "broken.jsonl": "bad_record"}
    assert s["documents_seen"] == 7 and s["new"] == 3 and s["chunks"] >= 3
    # The record from broken.jsonl is an exact duplicate of danube.txt: dropped, with reason.
    assert [d["kind"] for d in s["dropped"]] == ["exact_duplicate"]
    snap = snapshot()
    assert len(snap["documents"]) == 3
    assert len(snap["vectors"][CHUNK_INDEX]) == len(snap["chunks"]) == s["chunks"]
    # No LLM: the mention layer's spaCy entities only, no facts.
    names = {name for _, name in snap["entities"]}
    assert {"Marie Curie", "Warsaw", "Danube"} <= names, names
    assert snap["relations"] == set() and snap["propositions"] == set()
    assert s["mention_entities"] >= len(names) and s["mentions"] == len(snap["mentions"])


def test_corpus_is_streamed_in_windows_and_deduplicated_across_them(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of 2 documents: no window holds the whole corpus, a duplicate in a later
    window is still dropped, and progress counts up to the total at the end."""
    import flows.ingest

    corpus = write_corpus(tmp_path / "corpus")  # 3 documents
    (corpus / "zz-copy.txt").write_text(CORPUS["curie.txt"])  # read last: window 2
    monkeypatch.setattr(flows.ingest, "LOAD_WINDOW", 2)
    held: list[int] = []
    real_clean = flows.ingest.clean_documents

    def clean(cleaner: Any, docs: Any) -> Any:
        held.append(len(docs))
        return real_clean(cleaner, docs)

    monkeypatch.setattr(flows.ingest, "clean_documents", clean)
    seen: list[tuple[int, int]] = []
    from flows.progress import watching

    with watching(lambda stage, done, total: seen.append((done, total))):
        s = ingest_corpus([str(corpus)], extract=False)

    assert held == [2, 2]
    assert s["documents_seen"] == 4 and s["new"] == 3
    assert [d["kind"] for d in s["dropped"]] == ["exact_duplicate"]
    assert "curie.txt" in s["dropped"][0]["reason"]  # says which document it copies
    assert seen[0] == (0, 0) and seen[-1] == (3, 3)


def test_unchanged_corpus_does_no_embedding_work(kgrag_env: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    ingest_corpus([str(corpus)], extract=False)
    before = snapshot()
    calls: list[int] = []
    real = SentenceTransformerEmbedder.embed
    monkeypatch.setattr(SentenceTransformerEmbedder, "embed",
                        lambda self, texts, **kw: calls.append(len(texts)) or real(self, texts))
    s = ingest_corpus([str(corpus)], extract=False)
    assert (s["unchanged"], s["new"], s["changed"], s["chunks"]) == (3, 0, 0, 0)
    assert calls == []
    assert snapshot() == before


def test_changed_document_replaces_its_chunks_and_vectors(kgrag_env: Path,
                                                          tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    ingest_corpus([str(corpus)], extract=False)
    old = snapshot()
    (corpus / "danube.txt").write_text("The Danube is the second-longest river in Europe. "
                                       "It rises in the Black Forest of Germany.")
    s = ingest_corpus([str(corpus)], extract=False)
    assert (s["changed"], s["unchanged"]) == (1, 2)
    new = snapshot()
    gone = old["chunks"] - new["chunks"]
    added = new["chunks"] - old["chunks"]
    assert len(gone) == 1 and len(added) == 1
    assert next(iter(gone))[0] not in new["vectors"][CHUNK_INDEX]
    assert next(iter(added))[0] in new["vectors"][CHUNK_INDEX]


def test_graph_facts_have_provenance_and_delete_removes_only_what_a_doc_supported(
        kgrag_env: Path, tmp_path: Path, scripted_llm: ScriptedChatModel) -> None:
    files = dict(CORPUS)
    files["curie2.txt"] = "Marie Curie was a physicist born in Warsaw. Marie Curie lived " \
                          "in Paris with her daughters for many long years."
    corpus = write_corpus(tmp_path / "corpus", files)
    s = ingest_corpus([str(corpus)], extract=True)
    assert scripted_llm.calls == s["chunks"] == 4  # one call per chunk
    assert s["failed_chunks"] == [] and s["relations_kept"] > 0
    snap = snapshot()
    names = {n for _, n in snap["entities"]}
    assert {"Marie Curie", "Warsaw", "Danube", "Vienna"} <= names
    chunk_ids = {c[0] for c in snap["chunks"]}
    assert {r[3] for r in snap["relations"]} <= chunk_ids
    assert {p[1] for p in snap["propositions"]} <= chunk_ids

    doc = next(d for d, _ in snap["documents"]
               if any(c[3] == d and c[0] in {m[1] for m in snap["mentions"]
                                              if m[0] in _ids_named(snap, "Vienna")}
                      for c in snap["chunks"]))
    delete_documents([doc])
    after = snapshot()
    left = {n for _, n in after["entities"]}
    assert "Vienna" not in left and "Danube" not in left  # only the danube doc had them
    assert {"Marie Curie", "Warsaw", "Albert Einstein"} <= left
    assert _ids_named(snap, "Vienna") & after["vectors"][ENTITY_INDEX] == set()
    assert len(after["vectors"][CHUNK_INDEX]) == len(after["chunks"]) == 3


def _ids_named(snap: dict[str, Any], name: str) -> set[str]:
    return {i for i, n in snap["entities"] if n == name}


@pytest.mark.parametrize(("fail_at", "checkpoint_s", "death", "kept"), [
    ("write_facts", "0", KeyboardInterrupt, 1),   # killed; the first batch was checkpointed
    ("mark_done", "0", KeyboardInterrupt, 1),     # killed while checkpointing the second
    ("write_facts", "3600", KeyboardInterrupt, 0),  # killed before any checkpoint: all redone
    ("write_facts", "3600", RuntimeError, 1),     # an error: the finished batch is kept
])
def test_killed_run_resumes_to_the_same_state(kgrag_env: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              scripted_llm: ScriptedChatModel,
                                              fail_at: str, checkpoint_s: str,
                                              death: type[BaseException], kept: int) -> None:
    """A run dying in the middle of its second batch, re-run, ends where an uninterrupted
    run ends: same graph, same vectors, no duplicates."""
    import flows.graph_build
    import flows.ingest

    monkeypatch.setenv("KGRAG_INGEST_BATCH_DOCS", "1")
    monkeypatch.setenv("KGRAG_CHECKPOINT_SECONDS", checkpoint_s)
    get_settings.cache_clear()
    corpus = write_corpus(tmp_path / "corpus")
    module = flows.graph_build if fail_at == "write_facts" else flows.ingest
    real = getattr(module, fail_at)
    seen = {"n": 0}

    def dies_on_second(*args: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] == 2:
            raise death("killed")  # KeyboardInterrupt, like a kill: nothing after this runs
        return real(*args, **kwargs)

    monkeypatch.setattr(module, fail_at, dies_on_second)
    with pytest.raises(BaseException, match="killed"):
        ingest_corpus([str(corpus)], extract=True)
    monkeypatch.setattr(module, fail_at, real)
    resumed = ingest_corpus([str(corpus)], extract=True)
    assert resumed["new"] + resumed["resumed"] == 3 - kept and resumed["unchanged"] == kept
    state = snapshot()

    monkeypatch.setenv("KGRAG_GRAPH_NAME", f"t_fresh_{fail_at}_{checkpoint_s}_{kept}")
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "fresh"))
    get_settings.cache_clear()
    ingest_corpus([str(corpus)], extract=True)
    assert snapshot() == state


def test_changed_document_stays_searchable_until_its_new_version_is_written(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the new version, then remove the old: while a changed document is being
    re-ingested its old chunks are still there; a kill between the two steps is finished
    by the re-run."""
    import flows.ingest

    corpus = write_corpus(tmp_path / "corpus")
    ingest_corpus([str(corpus)], extract=False)
    old_chunks = {c[0] for c in snapshot()["chunks"]}
    (corpus / "danube.txt").write_text("The Danube is the second-longest river in Europe. "
                                       "It rises in the Black Forest of Germany.")
    seen: list[set[str]] = []
    real = flows.ingest.remove_old_chunks

    def killed_before_removal(*args: Any, **kwargs: Any) -> Any:
        seen.append({c[0] for c in snapshot()["chunks"]})
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(flows.ingest, "remove_old_chunks", killed_before_removal)
    with pytest.raises(KeyboardInterrupt):
        ingest_corpus([str(corpus)], extract=False)
    assert old_chunks < seen[0]  # old and new versions both present while writing
    monkeypatch.setattr(flows.ingest, "remove_old_chunks", real)
    s = ingest_corpus([str(corpus)], extract=False)
    assert (s["changed"], s["unchanged"], s["chunks_removed"]) == (1, 2, 1)
    state = snapshot()
    assert len(old_chunks - {c[0] for c in state["chunks"]}) == 1
    assert state["vectors"][CHUNK_INDEX] == {c[0] for c in state["chunks"]}

    monkeypatch.setenv("KGRAG_GRAPH_NAME", "t_fresh_changed")
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "fresh"))
    get_settings.cache_clear()
    ingest_corpus([str(corpus)], extract=False)
    assert snapshot() == state


def test_placeholder_left_by_a_kill_is_resumed_and_its_partial_chunks_removed(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill after a document's chunks were written but before it was marked done
    leaves a placeholder Document (no sha256). If the file then changes, the re-run must
    count it as resumed and remove the partial chunks first, not keep them beside the new
    ones."""
    import flows.ingest

    monkeypatch.setenv("KGRAG_CHECKPOINT_SECONDS", "3600")
    get_settings.cache_clear()
    corpus = write_corpus(tmp_path / "corpus")
    real = flows.ingest.write_mentions

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(flows.ingest, "write_mentions", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest_corpus([str(corpus)], extract=False)
    partial = snapshot()
    assert partial["chunks"] and {sha for _, sha in partial["documents"]} == {None}
    monkeypatch.setattr(flows.ingest, "write_mentions", real)
    (corpus / "danube.txt").write_text("The Danube is the second-longest river in Europe. "
                                       "It rises in the Black Forest of Germany.")
    s = ingest_corpus([str(corpus)], extract=False)
    assert (s["resumed"], s["new"]) == (3, 0) and s["chunks_removed"] == len(partial["chunks"])
    state = snapshot()

    monkeypatch.setenv("KGRAG_GRAPH_NAME", "t_fresh_placeholder")
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "fresh"))
    get_settings.cache_clear()
    ingest_corpus([str(corpus)], extract=False)
    assert snapshot() == state


def test_chunks_whose_extraction_failed_are_retried_by_the_next_run(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        scripted_llm: ScriptedChatModel) -> None:
    """The model failing on one chunk does not leave that chunk's facts missing for good:
    the document is marked done with the chunk listed, and the next ingest of the same
    files extracts only that chunk again."""
    from tests.corpus import scripted_extraction

    corpus = write_corpus(tmp_path / "corpus")

    def down_for_the_danube(request: Any) -> str:
        if "Danube" in request.messages[-1]["content"]:
            raise ValueError("model server went away")
        return scripted_extraction(request)

    scripted_llm.default = down_for_the_danube
    first = ingest_corpus([str(corpus)], extract=True)
    assert [p["kind"] for p in first["failed_chunks"]] == ["extraction"]
    assert "Danube" not in _relation_names(snapshot())

    scripted_llm.default = scripted_extraction
    calls = scripted_llm.calls
    second = ingest_corpus([str(corpus)], extract=True)
    assert (second["unchanged"], second["retried_chunks"], second["failed_chunks"]) == (3, 1, [])
    assert scripted_llm.calls == calls + 1  # that chunk only
    state = snapshot()
    assert "Danube" in _relation_names(state)
    third = ingest_corpus([str(corpus)], extract=True)
    assert third["retried_chunks"] == 0 and scripted_llm.calls == calls + 1

    monkeypatch.setenv("KGRAG_GRAPH_NAME", "t_fresh_retry")
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / "fresh"))
    get_settings.cache_clear()
    ingest_corpus([str(corpus)], extract=True)
    assert snapshot() == state


def _relation_names(snap: dict[str, Any]) -> set[str]:
    """The names of the entities some fact links."""
    names = dict(snap["entities"])
    return {names.get(x, "") for s, _, o, _ in snap["relations"] for x in (s, o)}
