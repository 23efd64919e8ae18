"""The real local model (Qwen2.5-Coder-0.5B via llama-cpp-python); marked `llm`.

The GGUF is assembled once per machine into the shared models folder (tests.conftest's
LOCAL_MODEL: $KGRAG_TEST_MODELS_DIR, else ~/.cache/kgrag/models) and reused by later runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from core.llm.base import CompletionRequest, LLMRequestError, complete
from core.llm.factory import make_chat_model
from core.llm.local import LlamaCppChatModel
from core.model_files import assemble_model
from core.settings import load_settings
from tests.conftest import LOCAL_MODEL

pytestmark = pytest.mark.llm

KG_SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
                "required": ["name", "type"],
            },
        },
        "triples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string"},
                    "predicate": {"type": "string"},
                    "object": {"type": "string"},
                },
                "required": ["subject", "predicate", "object"],
            },
        },
    },
    "required": ["entities", "triples"],
}
EXTRACT = CompletionRequest.of(
    [
        {"role": "system", "content": "Extract the entities and relation triples of the text "
         "as JSON with keys `entities` (name, type) and `triples` (subject, predicate, object)."},
        {"role": "user", "content": "Marie Curie was born in Warsaw. In 1903 she won the Nobel "
         "Prize in Physics together with Pierre Curie."},
    ],
    json_schema=KG_SCHEMA,
    max_tokens=200,
)


@pytest.fixture(scope="session")
def model_path() -> Path:
    return assemble_model(load_settings(), "0.5b", models_dir=LOCAL_MODEL.parent)


def test_extraction_is_schema_valid_json_and_the_rerun_is_cached(
    model_path: Path, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path, llm_model_path=model_path, llm_context=2048)
    model = make_chat_model(settings)

    first = complete(model, EXTRACT)
    data = json.loads(first.text)
    jsonschema.validate(data, KG_SCHEMA)
    assert data["triples"], first.text
    names = " ".join(t["subject"] + " " + t["object"] for t in data["triples"])
    assert "Curie" in names
    assert first.completion_tokens > 0 and not first.cached

    start = time.perf_counter()
    again = complete(model, EXTRACT)
    assert again.cached and again.text == first.text
    assert time.perf_counter() - start < 1.0
    u = model.usage
    assert (u.calls, u.cached_calls, u.completion_tokens) == (2, 1, first.completion_tokens)


def test_a_prompt_longer_than_the_context_is_refused_clearly(model_path: Path) -> None:
    model = LlamaCppChatModel(model_path, n_ctx=512)
    long = CompletionRequest.of([{"role": "user", "content": "word " * 2000}], max_tokens=8)
    with pytest.raises(LLMRequestError) as info:
        complete(model, long)
    assert "KGRAG_LLM_CONTEXT" in info.value.hint


def test_lines_extraction_on_the_real_model_gives_passage_grounded_triples(
    model_path: Path, tmp_path: Path
) -> None:
    from core.models import Chunk
    from kg.extract import ChunkContext, ChunkExtractor

    text = ("Marie Curie was born in Warsaw. In 1903 she shared the Nobel Prize in Physics "
            "with Pierre Curie and Henri Becquerel.")
    chunk = Chunk(id="chk_c", doc_id="doc_c", text=text, start=0, end=len(text), position=0)
    settings = load_settings(data_dir=tmp_path, llm_model_path=model_path, llm_context=2048)
    model = make_chat_model(settings)
    result = ChunkExtractor(model, output="lines").run([ChunkContext(chunk, "Marie Curie")])[0]
    assert not result.failed, result.error
    assert result.calls == 1 and model.usage.calls == 1  # no grammar, no second call
    names = {e.name for e in result.entities}
    assert any("Curie" in n for n in names), names
    lowered = text.lower()
    for e in result.entities:  # every end is written in the passage (the filter's promise)
        assert all(w.lower().strip(".,") in lowered for w in e.name.split()), e.name
    assert all(" and " not in e.name for e in result.entities)


def test_a_short_answer_request_gets_a_short_answer_on_the_real_model(
    model_path: Path, tmp_path: Path
) -> None:
    from core.answer import Triple
    from core.models import Chunk
    from retrieval.chunk_rag import ScoredChunk
    from retrieval.generate import AnswerGenerator, Sources

    text = "Marie Curie was born in Warsaw in 1867. She later moved to Paris."
    chunk = Chunk(id="chk_w", doc_id="doc_w", text=text, start=0, end=len(text), position=0)
    sources = Sources.number([ScoredChunk(chunk, 0.9, "vector")], list[Triple]())
    settings = load_settings(data_dir=tmp_path, llm_model_path=model_path, llm_context=2048)
    model = make_chat_model(settings)
    out = AnswerGenerator(model).generate("Where was Marie Curie born?", sources)
    assert not out.cannot_answer and "Warsaw" in out.short_answer
    assert len(out.short_answer.split()) <= 4
    # short-first: the answer alone, then the sentences that support it, cited.
    assert model.usage.calls == 2 and model.usage.completion_tokens <= 32 + 64
    assert any(s.citations == ["chk_w"] for s in out.sentences)


def test_a_streamed_answer_arrives_in_pieces_and_equals_the_unstreamed_one(
    model_path: Path, tmp_path: Path
) -> None:
    from core.llm.base import TextBuffer

    ask = CompletionRequest.of(
        [{"role": "system", "content": "Answer in one sentence from the source."},
         {"role": "user", "content": "Source: Marie Curie was born in Warsaw in 1867.\n"
          "Question: Where was Marie Curie born?"}], max_tokens=40, temperature=0.0)
    settings = load_settings(data_dir=tmp_path, llm_model_path=model_path, llm_context=2048)
    model = make_chat_model(settings)  # with the cache
    sink = TextBuffer()

    first = complete(model, ask, sink)

    assert len(sink.pieces) > 3 and "".join(sink.pieces) == first.text
    assert "Warsaw" in first.text
    replay = TextBuffer()
    assert complete(model, ask, replay).cached and replay.pieces == [first.text]
    # Greedy decoding streamed or not: the same text, and the same tokens counted once.
    plain = complete(LlamaCppChatModel(model_path, n_ctx=2048), ask)
    assert plain.text == first.text
    assert model.usage.completion_tokens == first.completion_tokens == plain.completion_tokens


def test_prompt_lookup_decoding_reads_the_greedy_reply_in_fewer_passes(model_path: Path) -> None:
    from core.llm import lookup
    from core.models import Chunk
    from kg.extract import ChunkContext, ChunkExtractor

    text = ("Marie Curie was born in Warsaw. In 1903 she shared the Nobel Prize in Physics "
            "with Pierre Curie and Henri Becquerel.")
    chunk = Chunk(id="chk_c", doc_id="doc_c", text=text, start=0, end=len(text), position=0)
    request = ChunkExtractor(None, output="lines").request(ChunkContext(chunk, "Marie Curie"))  # type: ignore[arg-type]
    plain = complete(LlamaCppChatModel(model_path, n_ctx=2048, lookup_decoding=False), request)
    fast = LlamaCppChatModel(model_path, n_ctx=2048)
    looked_up = complete(fast, request)
    # Guesses up to 2 tokens are checked by batches of 3, which llama.cpp rounds as it does
    # one token at a time on this passage: the very same reply (longer batches can round
    # differently at a near-tie; bench/README.md).
    stats = lookup.LookupStats()
    narrow = "".join(lookup.generate(fast._loaded(), request.messages, request.max_tokens or 0,
                                     request.stop, stats, max_draft=2))
    assert narrow == plain.text and stats.completion_tokens == plain.completion_tokens
    assert stats.accepted > 0 and stats.steps < stats.completion_tokens  # fewer passes
    assert "Warsaw" in looked_up.text and looked_up.finish_reason == "stop"
    assert looked_up.prompt_tokens == plain.prompt_tokens
    assert abs(looked_up.completion_tokens - plain.completion_tokens) <= 5
    # The budget and the stop strings hold as in llama-cpp-python's own decoding.
    short = complete(fast, request.with_(max_tokens=5))
    assert short.completion_tokens == 5 and short.finish_reason == "length"
    assert short.text == plain.text[:len(short.text)]
    cut = complete(fast, request.with_(stop=["Warsaw"]))
    assert "Warsaw" not in cut.text and cut.text == plain.text[:len(cut.text)]
