"""`FalkorGraphStore`: the knowledge graph in FalkorDB, through the native `falkordb` client.

Writes go through `GRAPH.QUERY`, every read (kgrag's own and the user's console) through
`GRAPH.RO_QUERY`, which the engine refuses to run when the query would write. Writes that
belong together (a delete's statements) go in one Redis MULTI/EXEC: all of them or none.

    >>> store = FalkorGraphStore("127.0.0.1", 6379, graph_name="kgrag")   # doctest: +SKIP
    >>> store.ensure_schema()                                             # doctest: +SKIP
    >>> store.read_query("MATCH (e:Entity) RETURN e.name LIMIT 3").rows   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from falkordb import Edge, FalkorDB, Node, Path
from falkordb.query_result import QueryResult as FalkorResult

from core.errors import QueryError, ReadOnlyViolation, ServiceError
from core.protocols import QueryResult
from core.settings import Settings
from kg.store import cypher as queries
from kg.store.base import CypherGraphStore, Row, Runner
from kg.store.read_only import find_write_clause

_READ_ONLY_REFUSAL = "to be executed only on read-only queries"
_NO_GRAPH = "empty key"
T = TypeVar("T")


class FalkorGraphStore(CypherGraphStore):
    """GraphStore on one FalkorDB graph (a Redis key) of a FalkorDB server."""

    supports_bolt = False
    supports_constraints = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        graph_name: str = "kgrag",
        *,
        password: str | None = None,
        row_limit: int = 1000,
        timeout_s: float = 30.0,
        socket_timeout_s: float | None = 300.0,
    ) -> None:
        super().__init__(queries.FALKOR, row_limit=row_limit, timeout_s=timeout_s)
        self.host, self.port, self.graph_name = host, port, graph_name
        try:
            self._db = FalkorDB(
                host=host,
                port=port,
                password=password,
                socket_connect_timeout=5,
                socket_timeout=socket_timeout_s,
            )
        except redis.RedisError as exc:
            raise _unreachable(host, port, exc) from None
        self._graph = self._db.select_graph(graph_name)

    @classmethod
    def from_settings(cls, settings: Settings, host: str, port: int) -> FalkorGraphStore:
        return cls(
            host,
            port,
            settings.graph_name,
            row_limit=settings.query_row_limit,
            timeout_s=settings.query_timeout_s,
        )

    # ------------------------------------------------------------------ transport

    def _write(self, query: str, params: dict[str, Any]) -> list[Row]:
        try:
            result = self._graph.query(query, params or None)
        except redis.ConnectionError as exc:
            raise _unreachable(self.host, self.port, exc) from None
        except redis.ResponseError as exc:
            raise QueryError(f"FalkorDB refused a kgrag statement: {exc}") from exc
        return _rows(result.header, result.result_set)

    def _read(self, query: str, params: dict[str, Any]) -> list[Row]:
        try:
            result = self._graph.ro_query(query, params or None)
        except redis.ConnectionError as exc:
            raise _unreachable(self.host, self.port, exc) from None
        except redis.ResponseError as exc:
            if _NO_GRAPH in str(exc):
                return []  # the graph key does not exist yet: nothing written
            raise QueryError(f"FalkorDB refused a kgrag query: {exc}") from exc
        return _rows(result.header, result.result_set)

    def _write_unit(self, work: Callable[[Runner], T]) -> T:
        """Run the statements of `work` as one unit: its writes all land, or none does.

        FalkorDB has no multi-statement transactions, but Redis runs a MULTI/EXEC block
        whole, with no other client's command in between, and finishes it once sent even if
        this process dies then. So `work` runs twice: first its reads run and its writes
        are only recorded; the writes go in one MULTI/EXEC; then `work` runs again over the
        recorded answers to build its result. That fits work whose writes depend on its
        reads, not on other writes' results (a delete, NEXT relinking).
        """
        plan = _PlannedUnit(self._read)
        work(plan.record)
        return plan.replay(work, self._exec_atomically(plan.writes))

    def _exec_atomically(self, writes: list[tuple[str, dict[str, Any]]]) -> list[list[Row]]:
        """The write statements in one MULTI/EXEC; their rows, in order."""
        if not writes:
            return []
        pipe = self._db.connection.pipeline(transaction=True)
        for query, params in writes:
            # The client's own parameter encoding, as `Graph.query` uses it.
            text = self._graph._build_params_header(params or None) + query
            pipe.execute_command("GRAPH.QUERY", self.graph_name, text, "--compact")
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.ConnectionError as exc:
            raise _unreachable(self.host, self.port, exc) from None
        rows = []
        for reply in replies:
            if isinstance(reply, Exception):  # the others of the block did land
                raise QueryError(f"FalkorDB refused a kgrag statement: {reply}") from reply
            result = FalkorResult(self._graph, reply)
            rows.append(_rows(result.header, result.result_set))
        return rows

    def _run_read_only(
        self, query: str, params: dict[str, Any], limit: int, timeout_s: float
    ) -> QueryResult:
        timeout_ms = max(1, int(timeout_s * 1000))
        try:
            try:
                result = self._graph.ro_query(query, params or None, timeout=timeout_ms)
            except redis.ResponseError as exc:
                if _NO_GRAPH not in str(exc):
                    raise
                self.ensure_schema()  # a fresh graph: create it, then ask again
                result = self._graph.ro_query(query, params or None, timeout=timeout_ms)
        except redis.ConnectionError as exc:
            raise _unreachable(self.host, self.port, exc) from None
        except redis.ResponseError as exc:
            raise _console_error(str(exc), timeout_s) from None
        except (TypeError, ValueError) as exc:  # parameters the client cannot encode
            raise QueryError(f"unusable query parameters: {exc}") from None
        columns = [str(h[1]) for h in result.header]
        records = result.result_set
        rows = [
            {col: to_json_value(v) for col, v in zip(columns, rec, strict=False)}
            for rec in records[:limit]
        ]
        return QueryResult(columns=columns, rows=rows, truncated=len(records) > limit)

    # ------------------------------------------------------------------ engine

    def ensure_schema(self) -> None:
        """Indexes on every id and lookup key, then unique constraints on the ids."""
        for statement in self.dialect.schema_statements:
            self._schema_command(lambda s=statement: self._graph.query(s))
        for label, prop in self.dialect.unique_keys:
            self._schema_command(
                lambda label=label, prop=prop: self._db.execute_command(
                    "GRAPH.CONSTRAINT", "CREATE", self.graph_name,
                    "UNIQUE", "NODE", label, "PROPERTIES", 1, prop,
                )
            )  # fmt: skip

    def _schema_command(self, send: Any) -> None:
        try:
            send()
        except redis.ConnectionError as exc:
            raise _unreachable(self.host, self.port, exc) from None
        except redis.ResponseError as exc:
            if not self.dialect.is_benign_schema_error(str(exc)):
                raise QueryError(f"FalkorDB refused a schema statement: {exc}") from exc

    def ping(self) -> bool:
        try:
            return bool(self._db.connection.ping())
        except redis.RedisError:
            return False

    def clear(self) -> None:
        """Drop the whole graph (data and indexes), then recreate the schema."""
        try:
            self._graph.delete()
        except redis.ConnectionError as exc:
            raise _unreachable(self.host, self.port, exc) from None
        except redis.ResponseError as exc:
            if _NO_GRAPH not in str(exc) and "not exist" not in str(exc).lower():
                msg = f"FalkorDB could not drop graph {self.graph_name!r}: {exc}"
                raise QueryError(msg) from exc
        self.ensure_schema()

    def close(self) -> None:
        self._db.close()


@dataclass
class _PlannedUnit:
    """The statements a unit of work asks for: reads answered at once (`answers`), writes
    recorded (answer None until the MULTI/EXEC has run), in the order asked."""

    read: Callable[[str, dict[str, Any]], list[Row]]
    statements: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[list[Row] | None] = field(default_factory=list)

    @property
    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        return [st for st, rows in zip(self.statements, self.answers, strict=True)
                if rows is None]

    def record(self, query: str, params: dict[str, Any]) -> list[Row]:
        rows = self.read(query, params) if find_write_clause(query) is None else None
        self.statements.append((query, dict(params)))
        self.answers.append(rows)
        return rows or []

    def replay(self, work: Callable[[Runner], T], write_rows: list[list[Row]]) -> T:
        """`work` once more, each statement answered from the plan; a statement the plan
        does not have next means the work did not fit one unit: a bug, refused."""
        written = iter(write_rows)
        steps = iter([(st, rows if rows is not None else next(written))
                      for st, rows in zip(self.statements, self.answers, strict=True)])

        def run(query: str, params: dict[str, Any]) -> list[Row]:
            planned, rows = next(steps, (None, []))
            if planned != (query, dict(params)):
                raise RuntimeError(f"a write unit asked for other statements when replayed: "
                                   f"{query[:80]!r}")
            return rows

        result = work(run)
        if next(steps, None) is not None:
            raise RuntimeError("a write unit asked for fewer statements when replayed")
        return result


# --------------------------------------------------------------------------- values


def to_json_value(value: Any) -> Any:
    """A FalkorDB result value as plain JSON-friendly Python.

    Nodes become their properties plus `_labels`, edges their properties plus `_type`,
    paths the list of their nodes and edges in order.
    """
    if isinstance(value, Node):
        return {"_labels": list(value.labels or []), **_props(value.properties)}
    if isinstance(value, Edge):
        return {"_type": value.relation, **_props(value.properties)}
    if isinstance(value, Path):
        items: list[Any] = []
        nodes, edges = value.nodes(), value.edges()
        for i, node in enumerate(nodes):
            items.append(to_json_value(node))
            if i < len(edges):
                items.append(to_json_value(edges[i]))
        return items
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # durations, points: readable text


def _props(properties: Mapping[str, Any] | None) -> dict[str, Any]:
    return {str(k): to_json_value(v) for k, v in (properties or {}).items()}


def _rows(header: list[Any], records: list[list[Any]]) -> list[Row]:
    columns = [str(h[1]) for h in header]
    return [dict(zip(columns, rec, strict=False)) for rec in records]


def _console_error(message: str, timeout_s: float) -> Exception:
    if _READ_ONLY_REFUSAL in message:
        return ReadOnlyViolation(
            "the Cypher console is read-only; FalkorDB refused a query that would write",
            hint="ask only MATCH/RETURN-style queries here; change the graph through "
            "`kgrag ingest` / `kgrag delete`",
        )
    if "timed out" in message.lower():
        return QueryError(
            f"the query ran longer than {timeout_s:g}s and was stopped",
            hint="add a LIMIT or a tighter MATCH, or raise KGRAG_QUERY_TIMEOUT_S",
        )
    if "mem consumption exceeded" in message.lower():
        return QueryError(
            "the query needed more memory than one query may use and was stopped",
            hint="add a LIMIT or a tighter MATCH",
        )
    return QueryError(f"Cypher error: {message}", hint="check the query against openCypher")


def _unreachable(host: str, port: int, exc: Exception) -> ServiceError:
    return ServiceError(
        f"FalkorDB at {host}:{port} is unreachable: {exc}",
        hint="start the embedded server with `kgrag services start` (or check "
        "KGRAG_FALKOR_HOST/KGRAG_FALKOR_PORT when KGRAG_FALKOR_EXTERNAL=true)",
    )
