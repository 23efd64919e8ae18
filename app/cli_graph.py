"""`kgrag cypher` (read-only console, or a question the local model turns into a query)
and `kgrag graph stats`."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import click
import typer
from rich.markup import escape
from rich.table import Table

from app.console import err, out, print_json
from core.errors import ReadOnlyViolation
from core.settings import get_settings

if TYPE_CHECKING:
    from flows.components import Components

graph = typer.Typer(help="Inspect the knowledge graph.", no_args_is_help=True)


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)[:200]
    return "" if value is None else str(value)


def cypher(
    query: str | None = typer.Argument(None, help='A read-only Cypher query, e.g. "MATCH '
                                       '(e:Entity) RETURN e.name LIMIT 5". Writes are '
                                       'refused.', show_default=False),
    ask: str | None = typer.Option(None, "--ask", help="A question in words: the local "
                                   "model writes the query from the graph's schema; it is "
                                   "shown to confirm or edit before it runs."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --ask: run the written "
                             "query without asking."),
    show: bool = typer.Option(False, "--show", help="With --ask: only print the written "
                              "query."),
    limit: int | None = typer.Option(None, "--limit", help="Most rows (default: the "
                                     "query_row_limit setting)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds (default: the "
                                         "query_timeout_s setting)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Query parameter NAME=JSON "
                                    "(repeatable), used as $NAME."),
    json_out: bool = typer.Option(False, "--json", help='{"columns": [...], "rows": [...]}'
                                  '; with --ask also "question" and "query".'),
) -> None:
    """Run a read-only Cypher query against the graph (exit code 2 if it would write).

    `--ask "QUESTION"` has the local model write the query first.
    """
    from flows.components import Components

    if (query is None) == (ask is None):
        raise typer.BadParameter("give either a QUERY or --ask \"QUESTION\"")
    c = Components.from_settings(get_settings())
    try:
        if ask is not None:
            query = _written_query(c, ask, yes=yes, show=show, json_out=json_out)
            if query is None:
                return
        assert query is not None
        result = c.graph.read_query(query, _params(param), limit=limit, timeout_s=timeout)
    finally:
        c.close()
    if json_out:
        print_json({"question": ask, "query": query, **result.to_json()} if ask is not None
                   else result.to_json())
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*(_cell(row.get(c)) for c in result.columns))
    out.print(table)
    more = " (truncated: raise --limit)" if result.truncated else ""
    out.print(f"[dim]{len(result.rows)} rows{more}[/]")


def _params(param: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in param:
        name, _, raw = p.partition("=")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


def _written_query(c: Components, question: str, *, yes: bool, show: bool,
                   json_out: bool) -> str | None:
    """The model's query for `question`, confirmed or edited by the user; None: not to
    be run (--show, declined, or no terminal to ask on)."""
    from retrieval.text_to_cypher import CypherQueryWriter

    with err.status("Writing the query ...") if not json_out else nullcontext():
        draft = CypherQueryWriter(c.llm, c.graph).write(question)
    if draft.refused:
        raise ReadOnlyViolation(f"the model wrote a query that would write: {draft.query}",
                                hint="ask again in other words, or write the query yourself")
    if show:
        if json_out:
            print_json({"question": question, "query": draft.query, "error": draft.error})
        else:
            out.print(draft.query, markup=False)
        return None
    if not json_out:
        err.print("[bold]Query:[/]")
        err.print(draft.query, markup=False, highlight=False)
    if draft.error:
        err.print(f"[yellow]its trial run failed:[/] {escape(draft.error)}")
    if yes:
        return draft.query
    if not sys.stdin.isatty():
        err.print("not run: stdin is not a terminal to confirm on; pass --yes to run the "
                  "query, --show to only print it")
        raise typer.Exit(1)
    choice = typer.prompt("Run it? [y]es / [e]dit / [n]o", default="y").strip().lower()
    if choice.startswith("e"):
        edited = click.edit(draft.query + "\n", extension=".cypher")
        return (edited or draft.query).strip()
    return draft.query if choice.startswith("y") else None


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
