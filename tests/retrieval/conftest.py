"""A small hand-built knowledge graph written through the real FalkorDB store, with real
FAISS indexes and the real embedder; and a scripted LLM that answers each QA prompt kind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.embed import SentenceTransformerEmbedder
from core.llm.base import CompletionRequest
from core.models import Chunk, Document, Entity, Mention, Relation, entity_id
from kg.store import FalkorGraphStore
from retrieval import prompts
from retrieval.index import FaissVectorIndex

ENTITIES = {
    "Marie Curie": ("Person", "Polish-French physicist and chemist"),
    "Pierre Curie": ("Person", "French physicist"),
    "Henri Becquerel": ("Person", "French physicist who discovered radioactivity"),
    "Irène Joliot-Curie": ("Person", "French chemist"),
    "Warsaw": ("City", "capital city of Poland"),
    "Poland": ("Country", "country in central Europe"),
    "Paris": ("City", "capital city of France"),
    "Vistula": ("River", "longest river in Poland"),
    "Nobel Prize in Physics": ("Award", "annual prize for physics"),
    "Physics Club": ("Organization", "a club of physicists"),
    "Lonely Island": ("Place", "an island nobody links to"),
}
MEMBERS = [f"Member {n}" for n in "ABCDEFGH"]

#: chunk key -> (text, [(subject, predicate, object)])
CHUNKS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "born": ("Marie Curie was born in Warsaw in 1867.",
             [("Marie Curie", "born in", "Warsaw")]),
    "married": ("Marie Curie married Pierre Curie in 1895.",
                [("Marie Curie", "married", "Pierre Curie")]),
    "nobel": ("Marie Curie, Pierre Curie and Henri Becquerel won the Nobel Prize in Physics "
              "in 1903.",
              [("Marie Curie", "won", "Nobel Prize in Physics"),
               ("Pierre Curie", "won", "Nobel Prize in Physics"),
               ("Henri Becquerel", "won", "Nobel Prize in Physics")]),
    "warsaw": ("Warsaw is the capital of Poland. Warsaw lies on the Vistula river.",
               [("Warsaw", "capital of", "Poland"), ("Warsaw", "lies on", "Vistula")]),
    "paris": ("Pierre Curie was born in Paris. Marie Curie worked in Paris.",
              [("Pierre Curie", "born in", "Paris"), ("Marie Curie", "worked in", "Paris")]),
    "daughter": ("Irène Joliot-Curie was the daughter of Marie Curie.",
                 [("Irène Joliot-Curie", "daughter of", "Marie Curie")]),
    "club": ("The Physics Club has eight members, from Member A to Member H.",
             [("Physics Club", "has member", m) for m in MEMBERS]),
    "island": ("Lonely Island is a small island with a lighthouse.", []),
    "danube": ("The Danube flows through Vienna and Budapest to the Black Sea.", []),
}


@dataclass
class HandGraph:
    """The graph, its indexes, and lookups by readable name."""

    store: FalkorGraphStore
    embedder: SentenceTransformerEmbedder
    chunk_index: FaissVectorIndex
    entity_index: FaissVectorIndex
    chunk_ids: dict[str, str] = field(default_factory=dict)

    def entity(self, name: str) -> Entity:
        found = self.store.get_entities([entity_id(name)])
        assert found, name
        return found[0]


@pytest.fixture(autouse=True)
def _scripted_grounding(monkeypatch: pytest.MonkeyPatch) -> None:
    """QA tests script the LLM checker's verdicts (the `grounding` prompt kind); the trained
    checker, the default, has its own tests (test_checker.py)."""
    monkeypatch.setenv("KGRAG_GROUNDING", "llm")


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(device="cpu")


def build_graph(store: FalkorGraphStore, embedder: SentenceTransformerEmbedder,
                index_dir: Path) -> HandGraph:
    entities = [Entity(id=entity_id(n), name=n, type=t, description=d)
                for n, (t, d) in ENTITIES.items()]
    entities += [Entity(id=entity_id(m), name=m, type="Person", description="club member")
                 for m in MEMBERS]
    docs, chunks, mentions, relations = [], [], [], []
    chunk_ids = {}
    for key, (text, triples) in CHUNKS.items():
        doc = Document(id=f"doc_{key}", source=f"{key}.txt", title=key, sha256=key, text=text)
        ch = Chunk(id=Chunk.make_id(doc.id, 0, text), doc_id=doc.id, text=text, start=0,
                   end=len(text), position=0)
        docs.append(doc)
        chunks.append(ch)
        chunk_ids[key] = ch.id
        named = {n for n in [*ENTITIES, *MEMBERS] if n in text}
        mentions += [Mention(entity_id=entity_id(n), chunk_id=ch.id) for n in sorted(named)]
        relations += [Relation(subject_id=entity_id(s), predicate=p, object_id=entity_id(o),
                               chunk_id=ch.id, doc_id=doc.id) for s, p, o in triples]
    store.upsert_documents(docs)
    store.upsert_chunks(chunks)
    store.upsert_entities(entities)
    store.upsert_mentions(mentions)
    store.upsert_relations(relations)
    chunk_index = FaissVectorIndex(index_dir / "chunks", embedder.dimension,
                                   embedder.model_name, device="cpu")
    chunk_index.add([c.id for c in chunks], embedder.embed([c.text for c in chunks]))
    entity_index = FaissVectorIndex(index_dir / "entities", embedder.dimension,
                                    embedder.model_name, device="cpu")
    entity_index.add([e.id for e in entities],
                     embedder.embed([f"{e.name}: {e.description}" for e in entities]))
    return HandGraph(store, embedder, chunk_index, entity_index, chunk_ids)


@pytest.fixture
def hand_graph(shared_falkor: tuple[str, int], embedder: SentenceTransformerEmbedder,
               tmp_path: Path) -> Iterator[HandGraph]:
    """The hand-built graph on its own graph of the shared FalkorDB server."""
    host, port = shared_falkor
    store = FalkorGraphStore(host, port, graph_name=f"qa_{uuid.uuid4().hex[:12]}")
    store.ensure_schema()
    try:
        yield build_graph(store, embedder, tmp_path / "indexes")
    finally:
        store._graph.delete()
        store.close()


# --------------------------------------------------------------------------- scripted LLM


def kind_of(request: CompletionRequest) -> str:
    """Which QA prompt a request is, from its system message."""
    system = request.messages[0]["content"]
    for kind, prefix in (("prune", prompts.PRUNE_SYSTEM), ("sufficiency",
                         prompts.SUFFICIENCY_SYSTEM), ("router", prompts.ROUTER_SYSTEM),
                         ("answer", prompts.ANSWER_SYSTEM),
                         ("answer", prompts.ANSWER_LINES_SYSTEM),
                         ("answer", prompts.SHORT_SYSTEM),
                         ("direct", prompts.DIRECT_SYSTEM),
                         ("grounding", prompts.GROUNDING_SYSTEM),
                         ("sure_candidates", prompts.SURE_CANDIDATES_SYSTEM),
                         ("sure_summary", prompts.SURE_SUMMARY_SYSTEM),
                         ("sure_verify", prompts.SURE_VERIFY_SYSTEM),
                         ("sure_rank", prompts.SURE_RANK_SYSTEM)):
        if system.startswith(prefix[:60]):
            return kind
    return "other"


Reply = Callable[[CompletionRequest], Any]


def qa_responder(**replies: Any) -> Callable[[CompletionRequest], str]:
    """A scripted-model step answering each QA prompt kind with a fixed JSON value or a
    callable(request) -> value; kinds not given fail the test loudly. An answer is given
    in the format the request asks for: JSON, the lines format, or the two calls of the
    short-first format (the value is asked for once, on the first call)."""
    pending: list[str] = []  # the short-first answer's sentences, for its second call

    def respond(request: CompletionRequest) -> str:
        kind = kind_of(request)
        if kind not in replies:
            raise AssertionError(f"unexpected {kind} call: {request.messages[-1]['content']}")
        if kind == "answer" and request.messages[-1]["content"] == prompts.SUPPORT_USER:
            return pending.pop() if pending else ""
        value = replies[kind]
        value = value(request) if callable(value) else value
        text = value if isinstance(value, str) else json.dumps(value)
        if kind == "answer" and request.json_schema is None:
            if request.messages[0]["content"].startswith(prompts.SHORT_SYSTEM):
                short, sentences = split_answer_lines(answer_lines(text))
                pending[:] = [sentences]
                return short
            return answer_lines(text)
        return text

    return respond


def split_answer_lines(text: str) -> tuple[str, str]:
    """A lines-format answer -> (the short answer, the sentence lines): the two replies of
    the short-first format. Without an "Answer:" line the first sentence's words stand in
    for the short answer."""
    lines = text.splitlines()
    if lines and lines[0].startswith("Answer: "):
        return lines[0].removeprefix("Answer: "), "\n".join(lines[1:])
    return (lines[0] if lines else ""), "\n".join(lines)


def answer_lines(answer: str) -> str:
    """An answer given as the JSON format, written in the lines format ("Answer: ..." and
    sentences with inline [n] markers), for requests in that format."""
    try:
        data = json.loads(answer)
    except json.JSONDecodeError:
        return answer  # not JSON: a reply scripted in the lines format (or junk) as it is
    if not isinstance(data, dict):
        return answer
    lines = []
    short = "unknown" if data.get("cannot_answer") else data.get("short_answer") or ""
    if short:
        lines.append(f"Answer: {short}")
    for item in data.get("sentences") or []:
        marks = "".join(f"[{str(c).strip('[]')}]" for c in item.get("citations") or [])
        text = str(item.get("text", "")).rstrip()
        end = text[-1] if text[-1:] in ".!?" else ""
        lines.append(f"{text[:len(text) - len(end)]}{' ' + marks if marks else ''}{end}")
    return "\n".join(lines)


def answer_json(*sentences: tuple[str, list[str]], cannot_answer: bool = False,
                short_answer: str = "") -> str:
    """The answer call's JSON, as the schema asks for it."""
    return json.dumps({"cannot_answer": cannot_answer, "short_answer": short_answer,
                       "sentences": [{"text": t, "citations": c} for t, c in sentences]})
