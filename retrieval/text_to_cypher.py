"""Ask the graph in words: the local model writes one read-only Cypher query.

The model sees a compact schema of the graph as it is (labels with counts and property
keys, the relationship patterns, the most frequent `RELATES` predicates, entity types,
the most mentioned entity names, document titles), the graph entities whose names occur
in the question, and a few worked examples of the schema's idioms (a relation is
`(:Entity)-[:RELATES {predicate}]->(:Entity)`: the predicate is a property, not a type).

What it writes is cut down to one statement and tried once through the store's read-only
path (`GraphStore.read_query`, first row only), so a query that would write is refused
before the engine sees it and a syntax error goes back to the model once, with the
engine's message. The caller shows the query and runs it (again) through the same path.

    >>> extract_cypher("```cypher\\nMATCH (d:Document) RETURN count(d);\\n```")
    'MATCH (d:Document) RETURN count(d)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import KgragError, ReadOnlyViolation
from core.llm.base import ChatModel, CompletionRequest, Message, complete
from core.protocols import GraphStore

# --------------------------------------------------------------------------- prompts

CYPHER_SYSTEM = (
    "You write Cypher queries for a knowledge graph. Reply with ONE read-only Cypher "
    "query and nothing else: no explanation, no code fence. Never CREATE, MERGE, SET or "
    "DELETE. Use only the labels, relationships and properties of the schema. People, "
    "places and things are all (e:Entity); their kind is e.type. A fact between two "
    "entities is (s:Entity)-[r:RELATES]->(o:Entity) with the fact's verb in r.predicate "
    "(a property, never a relationship type). A document's name is d.title. Compare "
    "names case-insensitively with toLower(e.name) = toLower('...'). Name every returned "
    "column with AS.\n\nSchema:\n{schema}"
)

CYPHER_USER = "Question: {question}{hints}\nCypher:"

CYPHER_HINTS = "\nEntities in the graph that the question names: {names}"

CYPHER_RETRY = "That query failed: {error}\nWrite the corrected query, only the query."

CYPHER_EMPTY = ("it returned no rows. Check the names against the schema and the entities "
                "listed, and for a fact use r.predicate CONTAINS a word of the verb")

#: Worked examples (question, query) in the schema's idioms, about names not in any
#: sample corpus so that the model copies the shape, not the values.
CYPHER_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("How many chunks are there?",
     "MATCH (c:Chunk) RETURN count(c) AS chunks"),
    ("Which documents mention Ada Lovelace?",
     "MATCH (e:Entity)-[:MENTIONED_IN]->(:Chunk)-[:PART_OF]->(d:Document)\n"
     "WHERE toLower(e.name) = toLower('Ada Lovelace')\n"
     "RETURN DISTINCT d.title AS document"),
    ("Who did Charles Babbage work with?",
     "MATCH (s:Entity)-[r:RELATES]->(o:Entity)\n"
     "WHERE toLower(s.name) = toLower('Charles Babbage') AND r.predicate CONTAINS 'work'\n"
     "RETURN o.name AS answer"),
    ("Which people were born in London?",
     "MATCH (s:Entity)-[r:RELATES]->(o:Entity)\n"
     "WHERE r.predicate CONTAINS 'born' AND toLower(o.name) = toLower('London')\n"
     "RETURN s.name AS person"),
    ("Which five entities are mentioned most often?",
     "MATCH (e:Entity)-[m:MENTIONED_IN]->(:Chunk)\n"
     "RETURN e.name AS entity, sum(m.count) AS mentions ORDER BY mentions DESC LIMIT 5"),
    ("List the places (GPE entities).",
     "MATCH (e:Entity) WHERE e.type = 'GPE' RETURN e.name AS place ORDER BY place"),
)

# --------------------------------------------------------------------------- schema

#: The relationship patterns of the schema (DESIGN.md), the same on every backend.
PATTERNS = {
    "PART_OF": "(:Chunk)-[:PART_OF]->(:Document)",
    "NEXT": "(:Chunk)-[:NEXT]->(:Chunk)",
    "MENTIONED_IN": "(:Entity)-[:MENTIONED_IN {count}]->(:Chunk)",
    "SYNONYM": "(:Entity)-[:SYNONYM {score}]->(:Entity)",
    "RELATES": "(:Entity)-[:RELATES {predicate, chunk_id, doc_id, confidence}]->(:Entity)",
    "FROM": "(:Proposition)-[:FROM]->(:Chunk)",
    "ABOUT": "(:Proposition)-[:ABOUT]->(:Entity)",
}
#: Bookkeeping properties a question never needs (lookup keys, hashes, run states).
_HIDDEN_KEYS = {"search", "sha256", "state", "run_id", "retry_chunks", "embedding"}

_KEYS = "MATCH (n:{label}) WITH n LIMIT 50 UNWIND keys(n) AS k RETURN DISTINCT k AS k"
_PREDICATES = ("MATCH (:Entity)-[r:RELATES]->(:Entity) RETURN r.predicate AS p, count(*) AS n "
               "ORDER BY n DESC, p LIMIT $k")
_TYPES = ("MATCH (e:Entity) RETURN e.type AS t, count(*) AS n ORDER BY n DESC, t LIMIT $k")
_TOP_ENTITIES = ("MATCH (e:Entity)-[m:MENTIONED_IN]->(:Chunk) "
                 "RETURN e.name AS name, e.type AS t, sum(m.count) AS n "
                 "ORDER BY n DESC, name LIMIT $k")
_TITLES = "MATCH (d:Document) RETURN d.title AS title ORDER BY title LIMIT $k"


@dataclass(frozen=True)
class GraphSchema:
    """What the model is told about the graph (`text`), and the names a query may use."""

    text: str
    labels: frozenset[str]
    relationship_types: frozenset[str]
    property_keys: frozenset[str]


def graph_schema(store: GraphStore, *, samples: int = 12) -> GraphSchema:
    """A compact schema of the graph as it is, for the model's prompt.

    Every query goes through the store's read-only path; `samples` bounds each list of
    values (predicates, types, names, titles).
    """
    stats = store.stats()
    lines = ["Node labels (count): properties"]
    keys: set[str] = set()
    for label, count in stats.nodes.items():
        found = {r["k"] for r in store.read_query(_KEYS.format(label=label)).rows}
        keys |= found
        shown = sorted(found - _HIDDEN_KEYS)
        lines.append(f"  {label} ({count}): {', '.join(shown) or '-'}")
    lines.append("Relationships (count):")
    for rel, count in stats.relationships.items():
        lines.append(f"  {PATTERNS.get(rel, f'()-[:{rel}]->()')} ({count})")
        keys |= set(re.findall(r"\w+", PATTERNS.get(rel, "").partition("{")[2]))
    k = {"k": samples}
    lists = (
        ("RELATES predicates, most frequent", _PREDICATES, "p"),
        ("Entity types", _TYPES, "t"),
        ("Most mentioned entities", _TOP_ENTITIES, "name"),
        ("Document titles", _TITLES, "title"),
    )
    for title, query, column in lists:
        values = [r[column] for r in store.read_query(query, k).rows if r.get(column)]
        if values:
            lines.append(f"{title}: " + ", ".join(_quoted(v) for v in values))
    return GraphSchema("\n".join(lines), frozenset(stats.nodes),
                       frozenset(stats.relationships), frozenset(keys))


def _quoted(value: object) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


# --------------------------------------------------------------------------- output

_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)(?:```|$)", re.DOTALL)
_START = re.compile(r"^\s*(OPTIONAL\s+MATCH|MATCH|WITH|UNWIND|CALL|RETURN)\b",
                    re.IGNORECASE | re.MULTILINE)


def extract_cypher(text: str) -> str:
    """The one Cypher statement in a model's reply: inside a code fence if there is one,
    from the first line that opens with a clause keyword, up to the first `;` or blank
    line (a reply with no such line is kept whole, for the engine to complain about)."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start = _START.search(body)
    if start is None:
        return body.strip()
    body = body[start.start():]
    body = re.split(r";|\n\s*\n", body, maxsplit=1)[0]
    return "\n".join(line.rstrip() for line in body.strip().splitlines())


# Labels and relationship types in patterns (`(x:Label`, `[r:TYPE`), property reads
# (`x.key`, not a function call such as `db.labels()`).
_LABEL = re.compile(r"\(\s*\w*\s*:\s*(\w+)")
_REL_TYPE = re.compile(r"\[\s*\w*\s*:\s*(\w+)")
_PROPERTY = re.compile(r"(?<=\w)\.([A-Za-z_]\w*)\b(?!\s*\()")


def unknown_names(query: str, schema: GraphSchema) -> str | None:
    """A hint when `query` uses a label, relationship type or property the graph does
    not have (the engine would just return no rows). A small model's usual slips: a
    relation type such as [:MARRIED] for what is a RELATES predicate, a :Person label for
    an entity type, `d.name` for a document's title."""
    labels = set(_LABEL.findall(query)) - schema.labels
    types = set(_REL_TYPE.findall(query)) - schema.relationship_types
    keys = set(_PROPERTY.findall(query)) - schema.property_keys
    problems = []
    if labels:
        problems.append(f"unknown node label {', '.join(sorted(labels))}: every entity is "
                        "(e:Entity) with its kind in e.type; the labels are "
                        + ", ".join(sorted(schema.labels)))
    if types:
        problems.append(f"unknown relationship type {', '.join(sorted(types))}: a fact is "
                        "(s:Entity)-[r:RELATES]->(o:Entity) WHERE r.predicate = '...'")
    if keys:
        problems.append(f"unknown property {', '.join(sorted(keys))}: see the schema "
                        "(a document has a title, an entity a name)")
    return "; ".join(problems) or None


# --------------------------------------------------------------------------- writer


@dataclass(frozen=True)
class CypherDraft:
    """A written query and what its trial run said.

    `error` is the complaint about the final query (None: it ran); `refused` is True when
    that complaint is that it would write. `attempts` counts model calls; `empty` says
    the trial run returned no row.
    """

    question: str
    query: str
    attempts: int
    error: str | None = None
    refused: bool = False
    empty: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


_QUESTION_WORDS = {"Which", "What", "Who", "Whom", "Where", "When", "How", "List", "In", "Is",
                   "Are", "Did", "Does", "Name", "Give", "Show", "Count"}
_NAME = re.compile(r"[A-Z][\w'\u2019-]*(?:\s+(?:of|de|du|la|von|van)?\s*[A-Z][\w'\u2019-]*)*")


class CypherQueryWriter:
    """Writes a read-only Cypher query for a question: one model call, and one more
    (with the complaint) when the first query fails its trial run or returns no row.

        >>> writer = CypherQueryWriter(llm, store)                 # doctest: +SKIP
        >>> writer.write("How many documents are there?").query    # doctest: +SKIP
        'MATCH (d:Document) RETURN count(d) AS documents'
    """

    def __init__(
        self,
        llm: ChatModel,
        store: GraphStore,
        *,
        schema: GraphSchema | None = None,
        retries: int = 1,
        max_tokens: int = 160,
        trial_timeout_s: float = 10.0,
    ) -> None:
        self.llm = llm
        self.store = store
        self._schema = schema
        self.retries = retries
        self.max_tokens = max_tokens
        self.trial_timeout_s = trial_timeout_s

    @property
    def schema(self) -> GraphSchema:
        """The graph's schema (read once per writer)."""
        if self._schema is None:
            self._schema = graph_schema(self.store)
        return self._schema

    def messages(self, question: str) -> list[Message]:
        """The prompt: system with the schema, worked examples, then the question. The
        part before the question is the same for every question, so a local model keeps
        it evaluated (llama.cpp reuses the longest common prompt prefix)."""
        messages: list[Message] = [
            {"role": "system", "content": CYPHER_SYSTEM.format(schema=self.schema.text)}]
        for ex_question, ex_query in CYPHER_EXAMPLES:
            messages += [{"role": "user", "content": CYPHER_USER.format(
                             question=ex_question, hints="")},
                         {"role": "assistant", "content": ex_query}]
        names = self.named_entities(question)
        hints = CYPHER_HINTS.format(names=", ".join(map(_quoted, names))) if names else ""
        messages.append({"role": "user",
                         "content": CYPHER_USER.format(question=question, hints=hints)})
        return messages

    def named_entities(self, question: str) -> list[str]:
        """Graph entity names for the capitalised spans of the question, so the model
        writes a name the graph has: the exact name when there is one, else the two
        shortest names containing the span ("Becquerel" -> 'Henri Becquerel')."""
        names: list[str] = []
        for span in dict.fromkeys(_NAME.findall(question)):
            words = span.split()
            if words[0] in _QUESTION_WORDS:
                span = " ".join(words[1:])
            if len(span) < 3:
                continue
            found = [e.name for e in self.store.find_entities(span, limit=2)]
            exact = [n for n in found if n.casefold() == span.casefold()]
            names += [n for n in exact or found if n not in names]
        return names[:6]

    def write(self, question: str) -> CypherDraft:
        """The query for `question`, tried once through the read-only path."""
        messages = self.messages(question)
        draft = CypherDraft(question, "", 0, "no query")
        for attempt in range(1, self.retries + 2):
            request = CompletionRequest.of(messages, max_tokens=self.max_tokens,
                                           temperature=0.0, stop=(";", "\n\n", "Question:"))
            query = extract_cypher(complete(self.llm, request).text)
            error, refused, empty = self.trial(query)
            draft = CypherDraft(question, query, attempt, error, refused, empty)
            if error is None and not empty:
                break
            complaint = error or CYPHER_EMPTY
            messages = [*messages, {"role": "assistant", "content": query},
                        {"role": "user", "content": CYPHER_RETRY.format(error=complaint)}]
        return draft

    def trial(self, query: str) -> tuple[str | None, bool, bool]:
        """(the complaint about `query` or None, whether it is a refused write, whether
        it returned no row): a run of its first row through the read-only path, then the
        names it uses that the schema lacks."""
        if not query:
            return "the reply held no Cypher query", False, False
        try:
            result = self.store.read_query(query, {}, limit=1,
                                           timeout_s=self.trial_timeout_s)
        except ReadOnlyViolation as exc:
            return exc.message, True, False
        except KgragError as exc:
            return exc.message, False, False
        return unknown_names(query, self.schema), False, not result.rows
