"""Question answering wired from `Components`: the Python API behind `kgrag ask`.

    >>> from flows.qa import ask
    >>> a = ask("Who shared the 1903 Nobel Prize in Physics with Marie Curie?")  # doctest: +SKIP
    >>> a.to_json()["sentences"][0]["verification"]["label"]                     # doctest: +SKIP
    'supported'
"""

from __future__ import annotations

from typing import cast, get_args

from core import timing
from core.answer import Answer
from core.errors import KgragError
from core.llm.base import ChatModel, TextSink
from core.settings import Settings, get_settings
from flows.components import CHUNK_INDEX, ENTITY_INDEX, Components
from retrieval.pipeline import AskMode, QuestionAnsweringPipeline

MODES: tuple[str, ...] = get_args(AskMode)


def checker_model(c: Components) -> ChatModel | None:
    """A dedicated grounding checker (`grounding_model` on the OpenAI-compatible server)."""
    s = c.settings
    if not s.grounding_model or s.llm_backend != "openai":
        return None
    from core.llm.factory import make_chat_model

    return make_chat_model(s.model_copy(update={"llm_model": s.grounding_model}))


def build_pipeline(c: Components) -> QuestionAnsweringPipeline:
    """The question-answering pipeline over the configured graph, indexes and models."""
    return QuestionAnsweringPipeline.from_parts(
        c.settings, c.graph, c.embedder, c.llm, c.index(CHUNK_INDEX), c.index(ENTITY_INDEX),
        checker_llm=checker_model(c), retriever=c.retriever(),
        pagerank=c.pagerank if c.settings.retriever == "ppr" else None)


def answer_question(question: str, mode: str | None = None,
                    components: Components | None = None,
                    stream: TextSink | None = None) -> Answer:
    """Answer with long-lived `components` (the UI keeps one set per process); they stay
    open. `mode`: auto | rag | tog | direct, None for the `qa_mode` setting. `stream` gets
    the answer text as the model generates it (a draft, before verification)."""
    _checked(mode)
    c = components or Components.from_settings(get_settings())
    pipeline = c.__dict__.get("_qa_pipeline")
    if pipeline is None:
        pipeline = c.__dict__["_qa_pipeline"] = build_pipeline(c)
    return pipeline.ask(question, cast(AskMode | None, mode), stream)


def _checked(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        raise KgragError(f"unknown mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    return mode


def ask(question: str, mode: str | None = None, settings: Settings | None = None
        ) -> Answer:
    """Answer one question with the configured backends, then release them."""
    _checked(mode)
    with timing.stage("open stores"):
        c = Components.from_settings(settings or get_settings())
    try:
        with timing.stage("open stores"):
            pipeline = c.__dict__["_qa_pipeline"] = build_pipeline(c)
        return pipeline.ask(question, cast(AskMode | None, mode))
    finally:
        with timing.stage("close"):
            c.close()
