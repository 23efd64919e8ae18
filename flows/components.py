"""The one factory that reads the settings and wires the stages together.

Flows and app surfaces ask this object for what they need; everything is built lazily and
once, so a CLI command that only reads the graph never loads an embedding model.

    >>> c = Components.from_settings(get_settings())   # doctest: +SKIP
    >>> c.graph.stats()                                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from core.embed import SentenceTransformerEmbedder
    from core.llm.base import ChatModel
    from core.nlp import SpacyTextAnalyser
    from core.protocols import GraphStore
    from retrieval.index import FaissVectorIndex
    from retrieval.passages import PassageRetriever
    from retrieval.ppr import PageRankRetriever


#: Names of the vector indexes under settings.index_dir (mutual indexing: chunks, entities
#: and propositions each have one, and the graph links them).
CHUNK_INDEX = "chunks"
ENTITY_INDEX = "entities"
PROPOSITION_INDEX = "propositions"
#: Extracted facts ("subject predicate object"), for query-to-fact linking in PageRank.
FACT_INDEX = "facts"


@dataclass
class Components:
    settings: Settings = field(default_factory=get_settings)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Components:
        return cls(settings or get_settings())

    @cached_property
    def graph(self) -> GraphStore:
        from kg.store import make_graph_store

        return make_graph_store(self.settings)

    @cached_property
    def embedder(self) -> SentenceTransformerEmbedder:
        from core.embed import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder.from_settings(self.settings)

    @cached_property
    def text_analyser(self) -> SpacyTextAnalyser:
        """spaCy (the `ner_model` setting), also made the project's sentence splitter."""
        from core.nlp import get_text_analyser, use_ner_model

        use_ner_model(self.settings.ner_model)
        return get_text_analyser(self.settings.ner_model)

    @cached_property
    def llm(self) -> ChatModel:
        from core.llm.factory import make_chat_model

        return make_chat_model(self.settings)

    def index(self, name: str) -> FaissVectorIndex:
        """A named vector index ("chunks", "entities", "propositions"), opened once."""
        cache: dict[str, FaissVectorIndex] = self.__dict__.setdefault("_indexes", {})
        if name not in cache:
            from retrieval.index import open_index

            cache[name] = open_index(self.settings, name, self.embedder.dimension,
                                     self.embedder.model_name)
        return cache[name]

    def retriever(self, kind: str | None = None) -> PassageRetriever:
        """The passage retriever `kind` names (default: the `retriever` setting), built
        once per kind: dense, bm25, hybrid (dense + BM25, RRF) or ppr (PageRank)."""
        kind = kind or self.settings.retriever
        cache: dict[str, PassageRetriever] = self.__dict__.setdefault("_retrievers", {})
        if kind not in cache:
            cache[kind] = self._make_retriever(kind)
        return cache[kind]

    def _make_retriever(self, kind: str) -> PassageRetriever:
        from retrieval.bm25 import BM25Retriever
        from retrieval.passages import DenseRetriever, HybridRetriever

        if kind == "dense":
            return DenseRetriever(self.index(CHUNK_INDEX), self.embedder)
        if kind == "bm25":
            return BM25Retriever(self.graph)
        if kind == "hybrid":
            return HybridRetriever(self.retriever("dense"), self.retriever("bm25"))
        if kind == "ppr":
            return self.pagerank
        raise ValueError(f"unknown retriever {kind!r}: dense, bm25, hybrid or ppr")

    @cached_property
    def pagerank(self) -> PageRankRetriever:
        from retrieval.graph_snapshot import SnapshotCache
        from retrieval.ppr import PageRankRetriever, PageRankSettings

        s = self.settings
        snapshots = SnapshotCache(self.graph, s.index_dir / "graph-snapshot",
                                  synonym_weight=s.ppr_synonym_weight,
                                  relation_weight=s.ppr_relation_weight)
        return PageRankRetriever(
            snapshots, self.index(CHUNK_INDEX), self.index(ENTITY_INDEX), self.embedder,
            self.text_analyser, self.index(FACT_INDEX),
            PageRankSettings(damping=s.ppr_damping, passage_weight=s.ppr_passage_weight,
                             dense_seeds=s.ppr_dense_seeds,
                             link_threshold=s.ppr_link_threshold,
                             link_candidates=s.ppr_link_candidates,
                             hub_exponent=s.ppr_hub_exponent),
            lexical=self.retriever("bm25") if s.ppr_passage_seeds == "hybrid" else None)

    def reload_changed_indexes(self) -> list[str]:
        """For long-lived readers (the UI): forget the opened indexes another process has
        saved a newer generation of since, and what was built on them (retrievers), so
        their next use loads the new one. A reader keeps the old generation until the
        new one is complete (its `meta.json` is written last). Returns the names dropped."""
        cache: dict[str, FaissVectorIndex] = self.__dict__.get("_indexes", {})
        stale = [name for name, index in cache.items()
                 if not index.unsaved and index.saved_generation() != index.generation]
        if stale:
            for name in stale:
                cache.pop(name, None)
            for built_on_them in ("_retrievers", "pagerank", "_qa_pipeline"):  # flows.qa
                self.__dict__.pop(built_on_them, None)
        return stale

    def save_indexes(self) -> None:
        """Save every opened index with unsaved changes."""
        cache: dict[str, FaissVectorIndex] = self.__dict__.get("_indexes", {})
        for index in cache.values():
            if index.unsaved:
                index.save()

    def close(self) -> None:
        if "graph" in self.__dict__:
            self.graph.close()
