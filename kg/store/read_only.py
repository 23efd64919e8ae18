"""Keyword scan that refuses Cypher which would write, before it reaches the engine.

Defence in depth: the engines are asked for read-only execution too (`GRAPH.RO_QUERY`,
read transactions), but FalkorDB's Bolt listener, for one, runs writes inside "read"
transactions. The scan ignores string literals, quoted identifiers and comments, so
`RETURN 'CREATE'` passes while `MATCH (n) DETACH DELETE n` does not.

    >>> find_write_clause("MATCH (n) RETURN n.name AS set_name")
    >>> find_write_clause("MATCH (n) SET n.x = 1")
    'SET'
"""

from __future__ import annotations

import re

from core.errors import ReadOnlyViolation

_WRITE_KEYWORDS = (
    "CREATE",
    "MERGE",
    "DELETE",
    "DETACH",
    "SET",
    "REMOVE",
    "DROP",
    "FOREACH",
    "ALTER",
    "GRANT",
    "DENY",
    "REVOKE",
    "RENAME",
    "TERMINATE",
)
# A keyword, not a property (`n.set`), parameter (`$merge`), label (`:Create`) or map key.
_KEYWORD = re.compile(
    r"(?<![\w.$:])(" + "|".join(_WRITE_KEYWORDS) + r")\b(?!\s*:)", re.IGNORECASE
)
_LOAD_CSV = re.compile(r"(?<![\w.$:])LOAD\s+CSV\b", re.IGNORECASE)
# Procedures whose name says they change something (db.idx.fulltext.createNodeIndex,
# db.create.setNodeVectorProperty, dbms.*, apoc.periodic.*, ...).
_WRITE_PROCEDURE = re.compile(
    r"\bCALL\s+((?:dbms|[\w]+(?:\.[\w]+)*\.(?:[\w]*(?:create|merge|drop|delete|set|remove|"
    r"clear|refactor|periodic|load|import|export|kill|terminate)[\w]*))(?:\.[\w]+)*)",
    re.IGNORECASE,
)


def strip_literals(cypher: str) -> str:
    """The query with string literals, `quoted` names and comments blanked out."""
    out: list[str] = []
    i, n = 0, len(cypher)
    while i < n:
        ch = cypher[i]
        if ch in "'\"":
            i = _skip_quoted(cypher, i, ch, backslash=True)
            out.append(" ")
        elif ch == "`":
            i = _skip_quoted(cypher, i, ch, backslash=False)
            out.append(" ")
        elif cypher.startswith("//", i):
            end = cypher.find("\n", i)
            i = n if end < 0 else end
        elif cypher.startswith("/*", i):
            end = cypher.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _skip_quoted(text: str, start: int, quote: str, *, backslash: bool) -> int:
    """Index just past the literal opened at `start` (end of text when unterminated)."""
    i = start + 1
    while i < len(text):
        ch = text[i]
        if backslash and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if not backslash and text.startswith(quote * 2, i):  # `a``b` escapes a backtick
                i += 2
                continue
            return i + 1
        i += 1
    return len(text)


def find_write_clause(cypher: str) -> str | None:
    """The first write clause or write procedure in `cypher`, or None for a read."""
    code = strip_literals(cypher)
    hits = [
        (match.start(), " ".join(match.group(0).split()))
        for pattern in (_KEYWORD, _LOAD_CSV, _WRITE_PROCEDURE)
        if (match := pattern.search(code))
    ]
    if not hits:
        return None
    clause = min(hits)[1]
    return clause.upper() if clause.upper() in _WRITE_KEYWORDS else clause


def ensure_read_only(cypher: str) -> None:
    """Raise `ReadOnlyViolation` when `cypher` contains a write clause."""
    clause = find_write_clause(cypher)
    if clause is not None:
        raise ReadOnlyViolation(
            f"the Cypher console is read-only; refused a query containing {clause!r}",
            hint="ask only MATCH/RETURN-style queries here; change the graph through "
            "`kgrag ingest` / `kgrag delete`",
        )
