"""Extraction: parsing and validation of model output, records with provenance, failures."""

from __future__ import annotations

import json

from core.errors import LLMCallError
from core.llm.testing import ScriptedChatModel
from core.models import Chunk, entity_id
from kg.extract import CHUNK_GRAPH_SCHEMA, ChunkContext, ChunkExtractor, build_messages

TEXT = "Marie Curie was born in Warsaw. She married Pierre Curie."
CHUNK = Chunk(id="chk_a", doc_id="doc_a", text=TEXT, start=0, end=len(TEXT), position=0)

GOOD = json.dumps({
    "entities": [
        {"name": "Marie Curie", "type": "Person", "description": "physicist"},
        {"name": "Warsaw", "type": "Location", "description": "city"},
        {"name": "marie curie", "type": "", "description": ""},  # same entity, other case
    ],
    "propositions": ["Marie Curie was born in Warsaw.", "Marie Curie married Pierre Curie."],
    "triples": [
        {"subject": "Marie Curie", "predicate": "Born In", "object": "Warsaw", "p": 0},
        {"subject": "Marie Curie", "predicate": "married", "object": "Pierre Curie", "p": 1},
        {"subject": "Marie Curie", "predicate": "born in", "object": "Warsaw", "p": 0},  # dup
        {"subject": "Warsaw", "predicate": "is", "object": "Warsaw", "p": 0},  # self loop
        {"subject": "", "predicate": "x", "object": "Warsaw", "p": 9},  # empty subject
    ],
})


def run_one(*script: object) -> tuple[ScriptedChatModel, object]:
    fake = ScriptedChatModel(script)  # type: ignore[arg-type]
    result = ChunkExtractor(fake, output="json").run([ChunkContext(CHUNK, title="Marie Curie")])[0]
    return fake, result


def test_one_call_per_chunk_with_schema_and_document_context() -> None:
    fake, result = run_one(GOOD)
    assert fake.calls == 1
    req = fake.requests[0]
    assert req.json_schema == CHUNK_GRAPH_SCHEMA
    assert "Document: Marie Curie" in req.messages[-1]["content"]
    assert TEXT in req.messages[-1]["content"]
    assert not result.failed  # type: ignore[attr-defined]


def test_records_are_deduplicated_and_carry_provenance() -> None:
    _, r = run_one(GOOD)
    names = sorted(e.name for e in r.entities)  # type: ignore[attr-defined]
    assert names == ["Marie Curie", "Pierre Curie", "Warsaw"]
    curie = next(e for e in r.entities if e.name == "Marie Curie")  # type: ignore[attr-defined]
    assert curie.type == "Person" and curie.id == entity_id("MARIE CURIE")
    rels = [(x.predicate, x.chunk_id, x.doc_id) for x in r.relations]  # type: ignore[attr-defined]
    assert rels == [("born in", "chk_a", "doc_a"), ("married", "chk_a", "doc_a")]
    assert {m.chunk_id for m in r.mentions} == {"chk_a"}  # type: ignore[attr-defined]
    assert len(r.mentions) == 3  # type: ignore[attr-defined]
    born = r.propositions[0]  # type: ignore[attr-defined]
    assert born.chunk_id == "chk_a"
    assert set(born.entity_ids) == {entity_id("Marie Curie"), entity_id("Warsaw")}


def test_same_output_gives_same_ids() -> None:
    _, a = run_one(GOOD)
    _, b = run_one(GOOD)
    assert [p.id for p in a.propositions] == [p.id for p in b.propositions]  # type: ignore
    assert [e.id for e in a.entities] == [e.id for e in b.entities]  # type: ignore


def test_output_that_does_not_validate_is_a_failed_chunk_with_reason() -> None:
    _, r = run_one('{"entities": [{"type": "Person"}], "propositions": [], "triples": []}')
    assert r.failed and "entities.0.name" in r.error  # type: ignore[attr-defined]
    assert r.entities == [] and r.relations == []  # type: ignore[attr-defined]


def test_truncated_json_is_a_failed_chunk_not_an_empty_one() -> None:
    _, r = run_one('{"entities": [{"name": "Marie')
    assert r.failed and "output began" in r.error  # type: ignore[attr-defined]


def test_llm_failure_is_recorded_and_other_chunks_still_land() -> None:
    other = CHUNK.model_copy(update={"id": "chk_b"})
    fake = ScriptedChatModel([LLMCallError("server down", hint="start it"), GOOD])
    results = ChunkExtractor(fake, output="json").run([ChunkContext(CHUNK), ChunkContext(other)])
    assert results[0].failed and "server down" in (results[0].error or "")
    assert not results[1].failed and results[1].chunk_id == "chk_b"


def test_previous_chunk_is_given_as_context_only() -> None:
    msgs = build_messages(ChunkContext(CHUNK, title="T", previous="She was a scientist."))
    assert "Previous passage (context only" in msgs[-1]["content"]
    assert "She was a scientist." in msgs[-1]["content"]


def test_overlong_values_are_cut_not_failed() -> None:
    long = json.dumps({"entities": [{"name": "Marie Curie", "type": "T", "description": "d" * 900},
                                    {"name": "X" * 500, "type": "T", "description": ""}],
                       "propositions": [], "triples": []})
    _, r = run_one(long)
    assert not r.failed  # type: ignore[attr-defined]
    # the description is cut; a 500-character "name" the passage does not hold is no entity
    assert [(e.name, len(e.description)) for e in r.entities] == [("Marie Curie", 300)]  # type: ignore


def test_valid_but_empty_output_is_a_failed_chunk_with_reason() -> None:
    empty = json.dumps({"entities": [], "propositions": ["Nothing here."], "triples": []})
    _, r = run_one(empty)
    assert r.failed and r.error.startswith("empty graph")  # type: ignore[attr-defined]
    # Unusable names count as empty too: a blank entity and a self-loop give no facts.
    blank = json.dumps({"entities": [{"name": " . ", "type": "T", "description": ""}],
                        "propositions": [], "triples": [
                            {"subject": "", "predicate": "is", "object": "", "p": 0}]})
    _, r = run_one(blank)
    assert r.failed and "1 entities and 1 triples" in r.error  # type: ignore[attr-defined]


def test_schema_asks_for_at_least_one_entity_and_triple() -> None:
    import jsonschema

    props = CHUNK_GRAPH_SCHEMA["properties"]
    assert props["entities"]["minItems"] == props["triples"]["minItems"] == 1
    # The retry layer validates with this schema, so `[]` is resampled, not accepted.
    empty = {"entities": [], "propositions": [], "triples": []}
    assert not jsonschema.Draft202012Validator(CHUNK_GRAPH_SCHEMA).is_valid(empty)
    assert jsonschema.Draft202012Validator(CHUNK_GRAPH_SCHEMA).is_valid(json.loads(GOOD))
