"""LlamaIndex adapter: kgrag's graph reasoning as a LlamaIndex retriever and query engine.

`KgragRetriever` returns the evidence chunks (ToG's source chunks or chunk retrieval, as
routed) as `NodeWithScore`s with their chunk ids, plus one text node per reasoning path, so
a LlamaIndex application can fuse them with its own retrievers or synthesise with its own
LLM. `KgragQueryEngine` returns kgrag's whole verified answer as a `Response`.

    >>> retriever = KgragRetriever(pipeline)                        # doctest: +SKIP
    >>> [n.node.node_id for n in retriever.retrieve("Who did Marie Curie marry?")]
    ['chk_5d...', 'path:tri_9a...']                                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from core.answer import Answer, ReasoningPath
from retrieval.chunk_rag import ScoredChunk
from retrieval.pipeline import AskMode, QuestionAnsweringPipeline


def chunk_node(c: ScoredChunk) -> NodeWithScore:
    node = TextNode(id_=c.chunk.id, text=c.chunk.text,
                    metadata={"doc_id": c.chunk.doc_id, "source": c.source, "kind": "chunk"})
    return NodeWithScore(node=node, score=c.score)


def path_node(p: ReasoningPath) -> NodeWithScore:
    ids = "-".join(t.id for t in p.triples)
    node = TextNode(id_=f"path:{ids}", text=p.text(),
                    metadata={"kind": "reasoning_path",
                              "chunk_ids": [t.chunk_id for t in p.triples],
                              "triples": [[t.subject, t.predicate, t.object]
                                          for t in p.triples]})
    return NodeWithScore(node=node, score=p.score)


class KgragRetriever(BaseRetriever):
    """Retrieval of a `QuestionAnsweringPipeline` (routing, ToG, chunk RAG), no generation."""

    def __init__(self, pipeline: QuestionAnsweringPipeline, *, mode: AskMode = "auto",
                 include_paths: bool = True,
                 callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.pipeline = pipeline
        self.mode = mode
        self.include_paths = include_paths

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        found = self.pipeline.evidence(query_bundle.query_str, self.mode)
        nodes = [chunk_node(c) for c in found.chunks]
        if self.include_paths:
            nodes += [path_node(p) for p in found.paths]
        return nodes


def answer_nodes(answer: Answer) -> list[NodeWithScore]:
    nodes = [NodeWithScore(node=TextNode(id_=e.id, text=e.text,
                                         metadata={"doc_id": e.doc_id, "marker": e.marker,
                                                   "source": e.source, "kind": "chunk"}),
                           score=e.score) for e in answer.evidence]
    return nodes + [path_node(p) for p in answer.paths]


class KgragQueryEngine(CustomQueryEngine):
    """The full kgrag answer (cited, verified) as a LlamaIndex `Response`; the structured
    `Answer` is in `response.metadata["answer"]`."""

    pipeline: Any
    mode: str = "auto"

    def custom_query(self, query_str: str) -> Response:
        answer: Answer = self.pipeline.ask(query_str, self.mode)
        return Response(response=answer.answer, source_nodes=answer_nodes(answer),
                        metadata={"answer": answer.to_json()})
