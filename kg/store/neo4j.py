"""`Neo4jGraphStore`: the knowledge graph in Neo4j 5 over Bolt, through the `neo4j` driver.

One long-lived driver per store. Writes run in `execute_write` transactions (the driver
retries them on transient faults; a delete is one transaction), reads in `execute_read`,
the user's console in a read transaction with a timeout. On Neo4j, `ensure_schema` creates
unique constraints on every id, lookup indexes and the `entity_search` full-text index,
through which `find_entities` looks entities up (no label scan). Tested on Neo4j
Community 5.26 (infra/neo4j runs it embedded for the tests).

It also talks to FalkorDB's Bolt listener (module arg `BOLT_PORT`), which differs from
Neo4j in ways this class detects at connect time and works around:

- string parameters are spliced into the query text between single quotes, with
  backslash escapes read and quotes not escaped: `"it's"` fails, `"a\\tb"` comes back
  with a tab, and `"x' MATCH (n) DETACH DELETE n //"` would run. Detected by a probe; the
  store then escapes backslashes and quotes in every string it sends, which makes them
  arrive verbatim (and makes the splice harmless);
- read transactions do not stop writes (the console's keyword scan still does);
- no constraint DDL over Bolt, and `database=` is ignored (one graph per server);
- a new connection's handshake sometimes hangs: short connection timeouts plus the
  driver's transaction retries get past it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import neo4j
from neo4j import exceptions as neo4j_errors
from neo4j import graph as neo4j_graph

from core.errors import QueryError, ReadOnlyViolation, ServiceError
from core.models import Entity
from core.protocols import QueryResult
from core.settings import Settings
from kg.store import cypher as queries
from kg.store.base import CypherGraphStore, Row, Runner, search_key
from kg.store.base import _entity as entity_from_row

T = TypeVar("T")

# A string with a backslash escape in it: Neo4j returns it as sent, FalkorDB's Bolt
# listener returns a tab.
_PROBE = "kgrag\\tprobe"
_CLEAR_BATCH = 10_000
# Rows per UNWIND write. Neo4j pays a fixed cost per transaction (commit, plan lookup,
# a round trip): at 100k entities 2000-row batches wrote about twice as fast as 500-row
# ones (bench/graph_store_bench.py), and 5000 no faster.
NEO4J_BATCH_SIZE = 2000


class Neo4jGraphStore(CypherGraphStore):
    """GraphStore on a Neo4j database (or FalkorDB's Bolt listener, see module doc)."""

    supports_bolt = True
    supports_constraints = True

    def __init__(
        self,
        uri: str,
        user: str = "neo4j",
        password: str = "",
        database: str = "neo4j",
        *,
        row_limit: int = 1000,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_retry_time_s: float = 15.0,
        batch_size: int = NEO4J_BATCH_SIZE,
    ) -> None:
        super().__init__(queries.NEO4J, row_limit=row_limit, timeout_s=timeout_s,
                         batch_size=batch_size)
        if not uri:
            raise ServiceError(
                "no Neo4j URI configured",
                hint="set KGRAG_NEO4J_URI (e.g. neo4j://localhost:7687) with "
                "KGRAG_NEO4J_USER / KGRAG_NEO4J_PASSWORD, or KGRAG_GRAPH_BACKEND=falkor",
            )
        self.uri, self.database = uri, database
        self._escape_strings = False
        self._quiet_sessions = False
        try:
            self._driver = neo4j.GraphDatabase.driver(
                uri,
                auth=(user, password),
                connection_timeout=connect_timeout_s,
                connection_acquisition_timeout=2 * connect_timeout_s,
                max_transaction_retry_time=max_retry_time_s,
            )
        except (ValueError, neo4j_errors.ConfigurationError) as exc:
            raise ServiceError(
                f"invalid Neo4j URI {uri!r}: {exc}",
                hint="use a Bolt URI such as neo4j://localhost:7687 or bolt://host:7687",
            ) from None
        try:
            self._connect()
        except BaseException:
            self._driver.close()
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> Neo4jGraphStore:
        return cls(
            settings.neo4j_uri,
            settings.neo4j_user,
            settings.neo4j_password.get_secret_value(),
            settings.neo4j_database,
            row_limit=settings.query_row_limit,
            timeout_s=settings.query_timeout_s,
        )

    @property
    def over_falkordb(self) -> bool:
        """True when the Bolt server is FalkorDB's listener, not Neo4j."""
        return self._escape_strings

    def _connect(self) -> None:
        """Reach the server (a few tries: handshakes can hang) and detect FalkorDB."""
        last: Exception | None = None
        for _attempt in range(3):
            try:
                self._driver.verify_connectivity()
                break
            except neo4j_errors.AuthError as exc:
                raise ServiceError(
                    f"Neo4j at {self.uri} rejected the credentials: {exc.message}",
                    hint="check KGRAG_NEO4J_USER and KGRAG_NEO4J_PASSWORD",
                ) from None
            except (neo4j_errors.DriverError, neo4j_errors.Neo4jError, OSError) as exc:
                last = exc
                time.sleep(0.2)
        else:
            raise self._unreachable(last)
        echoed = self._read("RETURN $probe AS probe", {"probe": _PROBE})
        if echoed and echoed[0]["probe"] != _PROBE:
            self._escape_strings = True
            self.dialect = queries.FALKOR_OVER_BOLT
            self.supports_constraints = False
        else:
            self._quiet_sessions = True

    # ------------------------------------------------------------------ transport

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        return _escape_strings(params) if self._escape_strings else params

    def _session(self, *, console: bool = False) -> neo4j.Session:
        if self._quiet_sessions and not console:
            # Notifications such as "property key does not exist" (any read of an empty
            # graph) are not for kgrag's users. FalkorDB's listener cannot filter them.
            return self._driver.session(database=self.database,
                                        notifications_min_severity="OFF")
        return self._driver.session(database=self.database)

    def _write(self, query: str, params: dict[str, Any]) -> list[Row]:
        return self._write_unit(lambda run: run(query, params))

    def _write_unit(self, work: Callable[[Runner], T]) -> T:
        def in_tx(tx: neo4j.ManagedTransaction) -> T:
            return work(lambda q, p: [r.data() for r in tx.run(q, self._encode(p))])

        return self._call(lambda: self._execute(in_tx, write=True))

    def _read(self, query: str, params: dict[str, Any]) -> list[Row]:
        encoded = self._encode(params)

        def in_tx(tx: neo4j.ManagedTransaction) -> list[Row]:
            return [r.data() for r in tx.run(query, encoded)]

        return self._call(lambda: self._execute(in_tx, write=False))

    def _execute(self, work: Callable[[neo4j.ManagedTransaction], T], *, write: bool) -> T:
        with self._session() as session:
            if write:
                return session.execute_write(work)
            return session.execute_read(work)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as exc:
            raise self._unreachable(exc) from None
        except neo4j_errors.Neo4jError as exc:
            raise QueryError(f"Neo4j refused a kgrag statement: {_describe(exc)}") from exc

    def _run_read_only(
        self, query: str, params: dict[str, Any], limit: int, timeout_s: float
    ) -> QueryResult:
        encoded = self._encode(params)

        @neo4j.unit_of_work(timeout=timeout_s)
        def in_tx(tx: neo4j.ManagedTransaction) -> QueryResult:
            result = tx.run(query, encoded)
            columns = list(result.keys())
            rows: list[Row] = []
            for record in result:
                if len(rows) == limit:
                    return QueryResult(columns=columns, rows=rows, truncated=True)
                rows.append(
                    {c: to_json_value(v) for c, v in zip(columns, record.values(), strict=False)}
                )
            return QueryResult(columns=columns, rows=rows, truncated=False)

        try:
            with self._session(console=True) as session:
                return session.execute_read(in_tx)
        except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as exc:
            raise self._unreachable(exc) from None
        except neo4j_errors.Neo4jError as exc:
            raise _console_error(exc, timeout_s) from None
        except (TypeError, ValueError) as exc:  # parameters the driver cannot encode
            raise QueryError(f"unusable query parameters: {exc}") from None

    # ------------------------------------------------------------------ engine

    def ensure_schema(self) -> None:
        """Unique constraints on every id, indexes on lookup keys (re-runnable)."""
        for statement in self.dialect.schema_statements:

            def in_tx(tx: neo4j.ManagedTransaction, s: str = statement) -> None:
                tx.run(s).consume()

            try:
                self._execute(in_tx, write=True)
            except (neo4j_errors.ServiceUnavailable, neo4j_errors.SessionExpired) as exc:
                raise self._unreachable(exc) from None
            except neo4j_errors.Neo4jError as exc:
                if not self.dialect.is_benign_schema_error(_describe(exc)):
                    msg = f"Neo4j refused a schema statement: {_describe(exc)}"
                    raise QueryError(msg) from exc

    def find_entities(self, name: str, limit: int = 10) -> list[Entity]:
        """Entities whose name or an alias contains `name`, ignoring case; exact first.

        On Neo4j the full-text index proposes candidates (the words of the query, the first
        as a suffix and the last as a prefix of an indexed word) and the shared substring
        test keeps the true matches, so the results are those of the label scan, found
        without it.
        """
        q = search_key(name)
        lucene = lucene_contains(q)
        if not self.dialect.entity_fulltext_lookup or lucene is None:
            return super().find_entities(name, limit)
        params = {"q": q, "lucene": lucene, "limit": int(limit)}
        return [entity_from_row(r) for r in self._read(self.dialect.entity_fulltext_lookup, params)]

    def describe(self) -> str:
        """The server and the state of kgrag's schema on it, for `kgrag doctor`."""
        if self.over_falkordb:
            return "FalkorDB's Bolt listener (no constraints, no full-text index)"
        (server,) = self._read(
            "CALL dbms.components() YIELD name, versions, edition "
            "RETURN name, versions[0] AS version, edition", {})
        indexes = self._read(
            "SHOW INDEXES YIELD name, state WHERE name = 'entity_search' RETURN state", {})
        fulltext = indexes[0]["state"].lower() if indexes else "missing (run kgrag ingest)"
        return (f"{server['name']} {server['version']} {server['edition']}, database "
                f"{self.database!r}, entity full-text index {fulltext}")

    def ping(self) -> bool:
        try:
            return bool(self._read("RETURN 1 AS ok", {}))
        except (ServiceError, QueryError):
            return False

    def clear(self) -> None:
        """Delete every kgrag node (other labels in the database are left alone)."""
        while _count(self._write(queries.CLEAR_BATCH, {"batch": _CLEAR_BATCH})):
            pass

    def close(self) -> None:
        self._driver.close()

    def _unreachable(self, exc: Exception | None) -> ServiceError:
        return ServiceError(
            f"Neo4j at {self.uri} is unreachable: {exc}",
            hint="start Neo4j or fix KGRAG_NEO4J_URI (a local Neo4j for trying: "
            "infra/neo4j/server.sh start DIR prints the settings; a server: "
            "infra/docker-compose.yml); for the embedded engine set "
            "KGRAG_GRAPH_BACKEND=falkor",
        )


# --------------------------------------------------------------------------- values


def to_json_value(value: Any) -> Any:
    """A Neo4j result value as plain JSON-friendly Python.

    Nodes become their properties plus `_labels`, relationships their properties plus
    `_type`, paths the list of their nodes and relationships in order.
    """
    if isinstance(value, neo4j_graph.Node):
        return {"_labels": sorted(value.labels), **_props(value)}
    if isinstance(value, neo4j_graph.Relationship):
        return {"_type": value.type, **_props(value)}
    if isinstance(value, neo4j_graph.Path):
        items: list[Any] = [to_json_value(value.start_node)]
        for rel, node in zip(value.relationships, value.nodes[1:], strict=False):
            items += [to_json_value(rel), to_json_value(node)]
        return items
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time) or hasattr(value, "iso_format"):
        return value.isoformat() if hasattr(value, "isoformat") else value.iso_format()
    return str(value)  # durations, points, bytes: readable text


# Lucene's query syntax characters, escaped with a backslash to mean themselves.
_LUCENE_SPECIAL = frozenset('+-&|!(){}[]^"~*?:\\/')
# Lucene's whitespace tokenizer cuts words longer than this (in UTF-16 units); a query
# with such a word falls back to the scan.
_LUCENE_MAX_WORD = 255


def lucene_contains(q: str) -> str | None:
    """A full-text query whose hits include every indexed key that contains `q`.

    `q` is a search key (casefolded, single spaces). A key contains it only if the key's
    words hold q's first word as a suffix, its middle words whole and its last word as a
    prefix; the query asks for exactly that (a superset: order is checked afterwards).
    None when the index cannot answer (empty or over-long words).
    """
    words = q.split(" ")
    if not q or any(len(w.encode("utf-16-le")) // 2 > _LUCENE_MAX_WORD for w in words):
        return None
    escaped = ["".join(f"\\{c}" if c in _LUCENE_SPECIAL else c for c in w) for w in words]
    if len(escaped) == 1:
        return f"*{escaped[0]}*"
    first, *middle, last = escaped
    return " AND ".join([f"*{first}", *middle, f"{last}*"])


def _props(entity: neo4j_graph.Entity) -> dict[str, Any]:
    return {str(k): to_json_value(v) for k, v in entity.items()}


def _escape_strings(value: Any) -> Any:
    """Strings escaped for FalkorDB's Bolt listener, which splices them in as '...'."""
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("'", "\\'")
    if isinstance(value, Mapping):
        return {k: _escape_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_strings(v) for v in value]
    return value


def _count(rows: list[Row]) -> int:
    return int(rows[0]["n"]) if rows else 0


def _describe(exc: neo4j_errors.Neo4jError) -> str:
    return f"{exc.code}: {exc.message}" if exc.code else str(exc)


def _console_error(exc: neo4j_errors.Neo4jError, timeout_s: float) -> Exception:
    code = exc.code or ""
    if "AccessMode" in code or "ForbiddenOnReadOnlyDatabase" in code:
        return ReadOnlyViolation(
            "the Cypher console is read-only; Neo4j refused a query that would write",
            hint="ask only MATCH/RETURN-style queries here; change the graph through "
            "`kgrag ingest` / `kgrag delete`",
        )
    if "TransactionTimedOut" in code or "Terminated" in code:
        return QueryError(
            f"the query ran longer than {timeout_s:g}s and was stopped",
            hint="add a LIMIT or a tighter MATCH, or raise KGRAG_QUERY_TIMEOUT_S",
        )
    if isinstance(exc, neo4j_errors.DatabaseError) and "UnknownError" in code:
        return QueryError(
            "the server rejected the query without saying why (FalkorDB's Bolt listener "
            "reports every error so)",
            hint="check the query's syntax; the falkor backend gives detailed errors",
        )
    return QueryError(f"Cypher error: {exc.message or exc}", hint="check the query's syntax")
