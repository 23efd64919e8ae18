"""The compact lines format and the triple checks: coordinated ends split, ends that are
not in the passage or too long dropped and counted, a no-triple reply asked again once."""

from __future__ import annotations

from core.llm.base import Completion
from core.llm.testing import ScriptedChatModel
from core.models import Chunk, entity_id
from kg.extract import LINES_MAX_TOKENS, ChunkContext, ChunkExtractor
from kg.triples import NOT_IN_PASSAGE, TOO_LONG, RawTriple, TripleFilter, parse_lines

TEXT = ("Irène Joliot-Curie was the daughter of Marie Curie and Pierre Curie. In 1903 Henri "
        "Becquerel shared the Nobel Prize in Physics with Pierre Curie and Marie Curie.")
CHUNK = Chunk(id="chk_a", doc_id="doc_a", text=TEXT, start=0, end=len(TEXT), position=0)


def extract(*script: object, mentions: tuple[str, ...] = ()) -> tuple[ScriptedChatModel, object]:
    fake = ScriptedChatModel(script)  # type: ignore[arg-type]
    ctx = ChunkContext(CHUNK, title="Curie", mentions=mentions)
    return fake, ChunkExtractor(fake).run([ctx])[0]


def test_lines_are_parsed_with_bullets_and_noise_counted() -> None:
    triples, malformed = parse_lines("- A | b | C\n2. D | e | F\n\nnot a triple\nG | | H\n")
    assert [(t.subject, t.object) for t in triples] == [("A", "C"), ("D", "F")]
    assert malformed == 2


def test_lines_request_is_unconstrained_and_bounded() -> None:
    fake, result = extract("Irène Joliot-Curie | daughter of | Marie Curie")
    request = fake.requests[0]
    assert request.json_schema is None and request.stop == ("\n\n",)
    assert request.max_tokens == LINES_MAX_TOKENS
    assert "subject | predicate | object" in request.messages[0]["content"]
    assert [r.predicate for r in result.relations] == ["daughter of"]  # type: ignore[attr-defined]


def test_coordinated_object_becomes_two_linked_triples() -> None:
    _, result = extract("Irène Joliot-Curie | daughter of | Marie Curie and Pierre Curie")
    objects = {r.object_id for r in result.relations}  # type: ignore[attr-defined]
    assert objects == {entity_id("Marie Curie"), entity_id("Pierre Curie")}
    names = {e.name for e in result.entities}  # type: ignore[attr-defined]
    assert "Marie Curie and Pierre Curie" not in names


def test_a_name_the_passage_holds_whole_is_not_split() -> None:
    checks = TripleFilter("Procter and Gamble sells soap in Ohio.", mentions=["Procter and Gamble"])
    kept = checks.apply([RawTriple("Procter and Gamble", "sells", "soap")])
    assert [t.subject for t in kept] == ["Procter and Gamble"]


def test_end_not_in_passage_and_clause_ends_are_dropped_and_counted() -> None:
    reply = ("Henri Becquerel | shared | the Nobel Prize in Physics with Pierre Curie and "
             "Marie Curie in the year 1903\n"
             "Marie Curie | worked with | Passy\n"
             "Henri Becquerel | shared | Nobel Prize in Physics\n")
    _, result = extract(reply)
    assert result.drops == {TOO_LONG: 1, NOT_IN_PASSAGE: 1}  # type: ignore[attr-defined]
    kept = [(r.predicate, r.object_id) for r in result.relations]  # type: ignore[attr-defined]
    assert kept == [("shared", entity_id("Nobel Prize in Physics"))]


def test_fuzzy_span_match_takes_small_spelling_differences() -> None:
    checks = TripleFilter(TEXT)
    assert checks.found("Irene Joliot Curie")  # no accent, no hyphen
    assert checks.found("Nobel prize in physics")
    assert not checks.found("Warsaw")


def test_a_cut_off_reply_keeps_its_complete_lines_without_another_call() -> None:
    cut = Completion("Irène Joliot-Curie | daughter of | Marie Curie\nHenri Becquerel | sha",
                     "scripted", finish_reason="length")
    fake, result = extract(cut)
    assert fake.calls == 1 and not result.failed  # type: ignore[attr-defined]
    assert len(result.relations) == 1  # type: ignore[attr-defined]
    assert result.drops == {"malformed line": 1}  # type: ignore[attr-defined]


def test_a_reply_without_triples_is_asked_once_more_under_a_grammar() -> None:
    fake, result = extract("I cannot find any facts.",
                           "Henri Becquerel | shared prize with | Marie Curie")
    assert fake.calls == 2
    first, second = fake.requests
    assert first.grammar is None and first.line_marker == "|" and first.stop_after_repeats
    assert second.grammar is not None and "field" in second.grammar
    assert not second.line_marker  # the grammar holds the format
    assert second.json_schema is None
    assert not result.failed and result.calls == 2  # type: ignore[attr-defined]
    assert [r.predicate for r in result.relations] == ["shared prize with"]  # type: ignore


def test_the_lines_grammar_is_valid_gbnf() -> None:
    from llama_cpp import LlamaGrammar

    from kg.extract import LINES_GRAMMAR

    assert LlamaGrammar.from_string(LINES_GRAMMAR, verbose=False) is not None


def test_a_reply_whose_every_triple_is_dropped_fails_with_the_reasons() -> None:
    _, result = extract("Marie Curie | born in | Warsaw", "Marie Curie | born in | Warsaw")
    assert result.failed and "empty graph" in result.error  # type: ignore[attr-defined]


def test_predicates_merge_on_a_canonical_form_and_keep_what_was_written() -> None:
    from kg.triples import canonical_predicate

    assert {canonical_predicate(p) for p in ("was born in", "Born In", "is born in")} == {
        "born in"}
    assert canonical_predicate("is the capital of") == "capital of"
    assert canonical_predicate("is") == "is"  # nothing but auxiliaries: kept
    _, result = extract("Henri Becquerel | was awarded | Nobel Prize in Physics")
    rel = result.relations[0]  # type: ignore[attr-defined]
    assert (rel.predicate, rel.raw_predicate) == ("awarded", "was awarded")
