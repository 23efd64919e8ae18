"""A LightRAG-style extractor, the baseline of `extract_bench.py`: delimited tuple records,
one few-shot example, and ONE gleaning pass per chunk (two LLM calls), no grammar.

Prompt text: LightRAG's `PROMPTS["entity_extraction"]` as in HKUDS/LightRAG commit
01a2c79f29ceab3cbf9cdcbff2e8ec33a2abd245 (`lightrag/prompt.py`, the `---Goal---` /
`---Steps---` template with `<|>` tuples, `##` records and `<|COMPLETE|>`), with its three
few-shot examples cut to one (its Example 3, the shortest, closest to one-paragraph chunks)
and the default entity types. The gleaning turn is the classic one-line
`entiti_continue_extraction` of LightRAG <= 1.3 (and GraphRAG / nano-graphrag): "MANY
entities were missed in the last extraction.  Add them below using the same format:". The
later, longer continuation prompt of that commit would add about 500 prompt tokens per
chunk; the short one keeps the baseline as cheap as it can be. LightRAG is MIT-licensed.

As in LightRAG's `extract_entities`, the extraction prompt is a single user message; the
gleaning call sends it again with the first answer as history. Output is parsed leniently:
records split on `##` or line breaks, fields on `<|>`, quotes and parentheses stripped,
missing trailing fields tolerated; what cannot be read is counted, not fatal.

    >>> from core.llm.testing import ScriptedChatModel
    >>> fake = ScriptedChatModel(['("entity"<|>"Ada"<|>"person"<|>"a mathematician")',
    ...                           '("entity"<|>"London"<|>"geo"<|>"a city")##'
    ...                           '("relationship"<|>"Ada"<|>"London"<|>"lived there"'
    ...                           '<|>"residence"<|>8)<|COMPLETE|>'])
    >>> result = LightRAGExtractor(fake).run("Ada lived in London.")
    >>> [e.name for e in result.entities]
    ['Ada', 'London']
    >>> [(r.source, r.keywords, r.target) for r in result.relations]
    [('Ada', 'residence', 'London')]
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from core.llm.base import ChatModel, Completion, CompletionRequest

TUPLE_DELIMITER = "<|>"
RECORD_DELIMITER = "##"
COMPLETION_DELIMITER = "<|COMPLETE|>"
ENTITY_TYPES = ["organization", "person", "geo", "event", "category"]
LANGUAGE = "English"

# LightRAG's template (commit 01a2c79f); only {examples} holds one example instead of three.
EXTRACTION_PROMPT = """---Goal---
Given a text document that is potentially relevant to this activity and a list of entity types, identify all entities of those types from the text and all relationships among the identified entities.
Use {language} as output language.

---Steps---
1. Identify all entities. For each identified entity, extract the following information:
- entity_name: Name of the entity, use same language as input text. If English, capitalized the name
- entity_type: One of the following types: [{entity_types}]
- entity_description: Provide a comprehensive description of the entity's attributes and activities *based solely on the information present in the input text*. **Do not infer or hallucinate information not explicitly stated.** If the text provides insufficient information to create a comprehensive description, state "Description not available in text."
Format each entity as ("entity"{tuple_delimiter}<entity_name>{tuple_delimiter}<entity_type>{tuple_delimiter}<entity_description>)

2. From the entities identified in step 1, identify all pairs of (source_entity, target_entity) that are *clearly related* to each other.
For each pair of related entities, extract the following information:
- source_entity: name of the source entity, as identified in step 1
- target_entity: name of the target entity, as identified in step 1
- relationship_description: explanation as to why you think the source entity and the target entity are related to each other
- relationship_strength: a numeric score indicating strength of the relationship between the source entity and target entity
- relationship_keywords: one or more high-level key words that summarize the overarching nature of the relationship, focusing on concepts or themes rather than specific details
Format each relationship as ("relationship"{tuple_delimiter}<source_entity>{tuple_delimiter}<target_entity>{tuple_delimiter}<relationship_description>{tuple_delimiter}<relationship_keywords>{tuple_delimiter}<relationship_strength>)

3. Identify high-level key words that summarize the main concepts, themes, or topics of the entire text. These should capture the overarching ideas present in the document.
Format the content-level key words as ("content_keywords"{tuple_delimiter}<high_level_keywords>)

4. Return output in {language} as a single list of all the entities and relationships identified in steps 1 and 2. Use **{record_delimiter}** as the list delimiter.

5. When finished, output {completion_delimiter}

---Examples---
{examples}

---Real Data---
Entity_types: [{entity_types}]
Text:
{input_text}

---Output---
Output:"""  # noqa: E501 (LightRAG's lines, kept as they are)

EXAMPLE = """------Example 1------

Entity_types: [economic_policy, athlete, event, location, record, organization, equipment]
Text:
```
At the World Athletics Championship in Tokyo, Noah Carter broke the 100m sprint record using cutting-edge carbon-fiber spikes.
```

Output:
("entity"{tuple_delimiter}"World Athletics Championship"{tuple_delimiter}"event"{tuple_delimiter}"The World Athletics Championship is a global sports competition featuring top athletes in track and field."){record_delimiter}
("entity"{tuple_delimiter}"Tokyo"{tuple_delimiter}"location"{tuple_delimiter}"Tokyo is the host city of the World Athletics Championship."){record_delimiter}
("entity"{tuple_delimiter}"Noah Carter"{tuple_delimiter}"athlete"{tuple_delimiter}"Noah Carter is a sprinter who set a new record in the 100m sprint at the World Athletics Championship."){record_delimiter}
("entity"{tuple_delimiter}"100m Sprint Record"{tuple_delimiter}"record"{tuple_delimiter}"The 100m sprint record is a benchmark in athletics, recently broken by Noah Carter."){record_delimiter}
("entity"{tuple_delimiter}"Carbon-Fiber Spikes"{tuple_delimiter}"equipment"{tuple_delimiter}"Carbon-fiber spikes are advanced sprinting shoes that provide enhanced speed and traction."){record_delimiter}
("entity"{tuple_delimiter}"World Athletics Federation"{tuple_delimiter}"organization"{tuple_delimiter}"The World Athletics Federation is the governing body overseeing the World Athletics Championship and record validations."){record_delimiter}
("relationship"{tuple_delimiter}"World Athletics Championship"{tuple_delimiter}"Tokyo"{tuple_delimiter}"The World Athletics Championship is being hosted in Tokyo."{tuple_delimiter}"event location, international competition"{tuple_delimiter}8){record_delimiter}
("relationship"{tuple_delimiter}"Noah Carter"{tuple_delimiter}"100m Sprint Record"{tuple_delimiter}"Noah Carter set a new 100m sprint record at the championship."{tuple_delimiter}"athlete achievement, record-breaking"{tuple_delimiter}10){record_delimiter}
("relationship"{tuple_delimiter}"Noah Carter"{tuple_delimiter}"Carbon-Fiber Spikes"{tuple_delimiter}"Noah Carter used carbon-fiber spikes to enhance performance during the race."{tuple_delimiter}"athletic equipment, performance boost"{tuple_delimiter}7){record_delimiter}
("relationship"{tuple_delimiter}"World Athletics Federation"{tuple_delimiter}"100m Sprint Record"{tuple_delimiter}"The World Athletics Federation is responsible for validating and recognizing new sprint records."{tuple_delimiter}"sports regulation, record certification"{tuple_delimiter}9){record_delimiter}
("content_keywords"{tuple_delimiter}"athletics, sprinting, record-breaking, sports technology, competition"){completion_delimiter}

"""  # noqa: E501

CONTINUE_PROMPT = "MANY entities were missed in the last extraction.  Add them below using the same format:\n"  # noqa: E501

_DELIMITERS = {
    "tuple_delimiter": TUPLE_DELIMITER,
    "record_delimiter": RECORD_DELIMITER,
    "completion_delimiter": COMPLETION_DELIMITER,
}
_RECORD_SPLIT = re.compile(rf"{re.escape(RECORD_DELIMITER)}|\n")
_PARENS = re.compile(r"\((.*)\)", re.DOTALL)


@dataclass(frozen=True)
class LightRAGEntity:
    name: str
    type: str = ""
    description: str = ""


@dataclass(frozen=True)
class LightRAGRelation:
    source: str
    target: str
    description: str = ""
    keywords: str = ""
    strength: str = ""


@dataclass
class ParsedRecords:
    """What one reply held: readable records, and how many record-like lines were not."""

    entities: list[LightRAGEntity] = field(default_factory=list)
    relations: list[LightRAGRelation] = field(default_factory=list)
    malformed: int = 0
    completed: bool = False  # the reply ended with the completion delimiter


@dataclass
class LightRAGExtraction:
    """The merged graph of one chunk (extraction + gleaning) and the replies behind it."""

    entities: list[LightRAGEntity] = field(default_factory=list)
    relations: list[LightRAGRelation] = field(default_factory=list)
    replies: list[Completion] = field(default_factory=list)
    malformed: int = 0
    completed: list[bool] = field(default_factory=list)
    error: str | None = None


def build_prompt(text: str) -> str:
    """LightRAG's extraction prompt for one chunk."""
    context = {**_DELIMITERS, "language": LANGUAGE, "entity_types": ", ".join(ENTITY_TYPES)}
    examples = EXAMPLE.format(**context)
    return EXTRACTION_PROMPT.format(**context, examples=examples, input_text=text)


def _field(value: str) -> str:
    return value.strip().strip('"').strip("'").strip()


def parse_records(text: str) -> ParsedRecords:
    """Read tuple records out of a reply, leniently (see the module docstring)."""
    out = ParsedRecords(completed=COMPLETION_DELIMITER in text)
    text = text.replace(COMPLETION_DELIMITER, "\n")
    for raw in _RECORD_SPLIT.split(text):
        raw = raw.strip()
        if not raw:
            continue
        inner = _PARENS.search(raw)
        body = inner.group(1) if inner else raw
        fields = [_field(f) for f in body.split(TUPLE_DELIMITER)]
        kind = fields[0].casefold()
        if kind == "entity" and len(fields) >= 2 and fields[1]:
            out.entities.append(LightRAGEntity(*(fields[1:4])))
        elif kind in ("relationship", "relation") and len(fields) >= 3 and fields[1] \
                and fields[2]:
            out.relations.append(LightRAGRelation(*(fields[1:6])))
        elif kind == "content_keywords":
            continue
        elif TUPLE_DELIMITER in raw or raw.startswith("("):
            out.malformed += 1  # a record that does not read as one
    return out


def _key(name: str) -> str:
    return " ".join(name.casefold().split())


class LightRAGExtractor:
    """Extraction + `gleaning` continuation passes per chunk, as LightRAG runs them."""

    def __init__(self, llm: ChatModel, *, gleaning: int = 1,
                 max_tokens: int | None = None) -> None:
        self.llm = llm
        self.gleaning = gleaning
        self.max_tokens = max_tokens

    async def arun(self, text: str) -> LightRAGExtraction:
        out = LightRAGExtraction()
        prompt = build_prompt(text)
        history = [{"role": "user", "content": prompt}]
        for turn in range(1 + self.gleaning):
            messages = history if turn == 0 else [*history, {"role": "user",
                                                              "content": CONTINUE_PROMPT}]
            request = CompletionRequest.of(messages, max_tokens=self.max_tokens,
                                           temperature=0.0)
            try:
                reply = await self.llm.acomplete(request)
            except Exception as exc:  # a failed call ends this chunk, as in LightRAG
                out.error = f"call {turn + 1}: {exc}"[:500]
                break
            out.replies.append(reply)
            if turn == 0:
                history = [*history, {"role": "assistant", "content": reply.text}]
            self._merge(out, parse_records(reply.text))
        return out

    def run(self, text: str) -> LightRAGExtraction:
        return asyncio.run(self.arun(text))

    @staticmethod
    def _merge(out: LightRAGExtraction, parsed: ParsedRecords) -> None:
        """Gleaned records add to the first ones; a repeated entity or pair is kept once."""
        names = {_key(e.name) for e in out.entities}
        for e in parsed.entities:
            if _key(e.name) not in names:
                names.add(_key(e.name))
                out.entities.append(e)
        pairs = {(_key(r.source), _key(r.target)) for r in out.relations}
        for r in parsed.relations:
            if (_key(r.source), _key(r.target)) not in pairs:
                pairs.add((_key(r.source), _key(r.target)))
                out.relations.append(r)
        out.malformed += parsed.malformed
        out.completed.append(parsed.completed)
