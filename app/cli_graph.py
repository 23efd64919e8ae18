"""`kgrag cypher` (read-only console) and `kgrag graph stats`."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from app.console import out, print_json
from core.settings import get_settings

graph = typer.Typer(help="Inspect the knowledge graph.", no_args_is_help=True)


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)[:200]
    return "" if value is None else str(value)


def cypher(
    query: str = typer.Argument(..., help='A read-only Cypher query, e.g. "MATCH (e:Entity) '
                                'RETURN e.name LIMIT 5". Writes are refused.'),
    limit: int | None = typer.Option(None, "--limit", help="Most rows (default: the "
                                     "query_row_limit setting)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds (default: the "
                                         "query_timeout_s setting)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Query parameter NAME=JSON "
                                    "(repeatable), used as $NAME."),
    json_out: bool = typer.Option(False, "--json", help='{"columns": [...], "rows": [...]}'),
) -> None:
    """Run a read-only Cypher query against the graph (exit code 2 if it would write)."""
    from kg.store import make_graph_store

    params: dict[str, Any] = {}
    for p in param:
        name, _, raw = p.partition("=")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    store = make_graph_store(get_settings())
    try:
        result = store.read_query(query, params, limit=limit, timeout_s=timeout)
    finally:
        store.close()
    if json_out:
        print_json(result.to_json())
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*(_cell(row.get(c)) for c in result.columns))
    out.print(table)
    more = " (truncated: raise --limit)" if result.truncated else ""
    out.print(f"[dim]{len(result.rows)} rows{more}[/]")


@graph.command("stats")
def stats(json_out: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """Node and relationship counts by label and type."""
    from kg.store import make_graph_store

    store = make_graph_store(get_settings())
    try:
        st = store.stats()
    finally:
        store.close()
    if json_out:
        print_json({"nodes": st.nodes, "relationships": st.relationships})
        return
    table = Table("kind", "name", "count")
    for k, v in sorted(st.nodes.items()):
        table.add_row("node", k, str(v))
    for k, v in sorted(st.relationships.items()):
        table.add_row("relationship", k, str(v))
    out.print(table)
