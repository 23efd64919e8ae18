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
    from core.protocols import GraphStore
    from retrieval.index import FaissVectorIndex


#: Names of the vector indexes under settings.index_dir (mutual indexing: chunks, entities
#: and propositions each have one, and the graph links them).
CHUNK_INDEX = "chunks"
ENTITY_INDEX = "entities"
PROPOSITION_INDEX = "propositions"


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

    def save_indexes(self) -> None:
        """Save every opened index with unsaved changes."""
        cache: dict[str, FaissVectorIndex] = self.__dict__.get("_indexes", {})
        for index in cache.values():
            if index.unsaved:
                index.save()

    def close(self) -> None:
        if "graph" in self.__dict__:
            self.graph.close()
