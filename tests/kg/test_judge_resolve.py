"""Judge filtering and entity-resolution merges (real embedder where embeddings are used)."""

from __future__ import annotations

import json

import pytest

from core.embed import SentenceTransformerEmbedder
from core.llm.testing import ScriptedChatModel
from core.models import Chunk, Entity, Mention, Proposition, Relation, entity_id
from kg.judge import CheckerJudge, GroundingJudge, LLMTripleJudge, judge
from kg.resolve import (
    ChainResolver,
    EmbeddingResolver,
    FuzzyResolver,
    NameBlocks,
    apply_resolution,
)

TEXT = "Marie Curie was born in Warsaw. She won the Nobel Prize in Physics in 1903."
CHUNK = Chunk(id="c1", doc_id="d1", text=TEXT, start=0, end=len(TEXT), position=0)


def ent(name: str, type_: str = "Person") -> Entity:
    return Entity(id=entity_id(name), name=name, type=type_)


def rel(s: str, p: str, o: str) -> Relation:
    return Relation(subject_id=entity_id(s), predicate=p, object_id=entity_id(o),
                    chunk_id="c1", doc_id="d1")


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(device="cpu")


def test_grounding_judge_keeps_supported_and_drops_invented(
        embedder: SentenceTransformerEmbedder) -> None:
    ents = [ent("Marie Curie"), ent("Warsaw", "Location"), ent("Nobel Prize in Physics", "Award"),
            ent("Albert Einstein"), ent("Berlin", "Location")]
    rels = [rel("Marie Curie", "born in", "Warsaw"),
            rel("Marie Curie", "won", "Nobel Prize in Physics"),
            rel("Albert Einstein", "lived in", "Berlin")]
    out = judge(GroundingJudge(embedder.embed), CHUNK, rels, ents)
    assert [r.predicate for r in out.kept] == ["born in", "won"]
    assert [r.predicate for r in out.dropped] == ["lived in"]
    assert all(r.judge_score is not None for r in out.kept + out.dropped)
    assert min(r.judge_score or 0 for r in out.kept) > max(r.judge_score or 1 for r in out.dropped)


def test_llm_judge_uses_one_call_per_chunk_and_missing_verdicts_drop() -> None:
    fake = ScriptedChatModel([json.dumps({"verdicts": [True]})])
    rels = [rel("Marie Curie", "born in", "Warsaw"), rel("Marie Curie", "born in", "Paris")]
    out = judge(LLMTripleJudge(fake), CHUNK, rels, [ent("Marie Curie"), ent("Warsaw")])
    assert fake.calls == 1
    assert "1. Marie Curie born in Warsaw" in fake.requests[0].messages[-1]["content"]
    assert len(out.kept) == 1 and len(out.dropped) == 1


def test_fuzzy_resolver_merges_spelling_variants_within_type_only() -> None:
    known = [ent("Marie Sklodowska Curie")]
    new = [ent("Marie Skłodowska-Curie"), ent("Marie Sklodowska Curie", "Ship"), ent("UK")]
    res = FuzzyResolver().resolve(new, known)
    assert res.of(new[0].id) == known[0].id
    assert res.of(entity_id("UK")) == entity_id("UK")


def test_fuzzy_resolver_takes_the_best_name_not_the_first_above_the_threshold() -> None:
    known = [ent("Marie Sklodowska Curie Institute"), ent("Marie Sklodowska Curie")]
    new = [ent("Marie Skłodowska Curie"), ent("Marie Sklodowska-Curie")]
    res = FuzzyResolver(threshold=70).resolve(new, known)
    assert res.of(new[0].id) == known[1].id
    assert res.of(new[1].id) == new[1].id  # the same id as a known one: nothing to merge


def test_name_blocks_find_variants_by_a_rare_shared_word_and_skip_common_words() -> None:
    blocks = NameBlocks(max_block=3)
    blocks.add({entity_id(n): n for n in (
        "Marie Skłodowska-Curie", "Pierre Curie", "Curie Institute", "Warsaw University",
        "Harvard University", "Oxford University", "Marie Antoinette")})
    blocks.add([(entity_id("Marie Skłodowska-Curie"), "Madame Curie")])  # an alias
    found = blocks.candidates("Marie Sklodowska Curie", limit=10)
    assert found[0] == entity_id("Marie Skłodowska-Curie")  # 'sklodowska' after folding
    assert entity_id("Pierre Curie") in found
    # "university" is carried by 3 names (not more than max_block): still a block ...
    assert entity_id("Oxford University") in blocks.candidates("University of Oxford")
    blocks.add({entity_id("Yale University"): "Yale University"})
    # ... with a fourth it is too common to block on; "oxford" still is
    assert blocks.candidates("University of Oxford") == [entity_id("Oxford University")]
    assert blocks.candidates("Madame X", limit=1) == [entity_id("Marie Skłodowska-Curie")]
    assert blocks.candidates("of the") == [] and len(blocks) == 8


def test_embedding_resolver_merges_paraphrased_names(
        embedder: SentenceTransformerEmbedder) -> None:
    known = [ent("United States of America", "Location")]
    new = [ent("United States", "Location"), ent("Canada", "Location")]
    res = EmbeddingResolver(embedder.embed, threshold=0.85).resolve(new, known)
    assert res.of(new[0].id) == known[0].id
    assert res.of(new[1].id) == new[1].id


def test_apply_resolution_rewrites_ids_keeps_aliases_and_is_idempotent() -> None:
    known = [ent("Marie Sklodowska Curie")]
    new = [ent("Marie Skłodowska-Curie"), ent("Warsaw", "Location")]
    res = ChainResolver([FuzzyResolver()]).resolve(new, known)
    mentions = [Mention(entity_id=e.id, chunk_id="c1") for e in new]
    rels = [Relation(subject_id=new[0].id, predicate="born in", object_id=new[1].id,
                     chunk_id="c1", doc_id="d1")]
    props = [Proposition(id="p1", text="x", chunk_id="c1", doc_id="d1",
                         entity_ids=(new[0].id,))]
    facts = apply_resolution(res, new, known, mentions, rels, props)
    canon = next(e for e in facts.entities if e.id == known[0].id)
    assert canon.aliases == ("Marie Skłodowska-Curie",)
    assert facts.relations[0].subject_id == known[0].id
    assert {m.entity_id for m in facts.mentions} == {known[0].id, entity_id("Warsaw")}
    assert facts.propositions[0].entity_ids == (known[0].id,)
    again = apply_resolution(res, new, facts.entities, mentions, rels, props)
    assert again.entities == facts.entities and again.relations == facts.relations


# --- a planted false triple on a real passage ----------------------------------------

PASSAGE = ("Marie Curie was born in Warsaw in 1867. She married Pierre Curie in 1895 and "
        "moved to Paris, where she worked as a physicist.")
JCHUNK = Chunk(id="chk_j", doc_id="doc_j", text=PASSAGE, start=0, end=len(PASSAGE), position=0)
FACTS = [("Marie Curie", "born in", "Warsaw"), ("Marie Curie", "married", "Pierre Curie"),
         ("Marie Curie", "moved to", "Paris")]
PLANTED = ("Marie Curie", "born in", "Lisbon")


def planted_relations() -> tuple[list[Relation], dict[str, str]]:
    rels, names = [], {}
    for s, p, o in [*FACTS, PLANTED]:
        names[entity_id(s)], names[entity_id(o)] = s, o
        rels.append(Relation(subject_id=entity_id(s), predicate=p, object_id=entity_id(o),
                             chunk_id=JCHUNK.id, doc_id=JCHUNK.doc_id))
    return rels, names


def test_grounding_judge_ranks_a_planted_false_triple_last(
        embedder: SentenceTransformerEmbedder) -> None:
    rels, names = planted_relations()
    scores = GroundingJudge(embedder.embed).score(JCHUNK, rels, names)
    assert scores[-1] < min(scores[:-1])


def test_checker_judge_ranks_a_planted_false_triple_last() -> None:
    from retrieval.checker import CrossEncoderGroundingChecker
    from tests.checker import tiny_checker_dir

    rels, names = planted_relations()
    checker_judge = CheckerJudge(CrossEncoderGroundingChecker(tiny_checker_dir()))
    scores = checker_judge.score(JCHUNK, rels, names)
    assert scores[-1] < min(scores[:-1])
