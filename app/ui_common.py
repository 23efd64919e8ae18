"""What every page of the Streamlit app shares: the components, and errors shown as
readable messages instead of tracebacks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from core.errors import KgragError
from core.settings import get_settings
from flows.components import Components

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("kgrag.ui")


@st.cache_resource(show_spinner="Connecting to the graph and loading models ...")
def shared_components() -> Components:
    """The one set of components of this server process (see `components`)."""
    return Components.from_settings(get_settings())


def components() -> Components:
    """One set of components per server process (models load once, connections reused),
    with the vector indexes an ingest has saved since reloaded (flows.components)."""
    c = shared_components()
    c.reload_changed_indexes()
    return c


def show_error(exc: BaseException) -> None:
    if isinstance(exc, KgragError):
        st.error(f"**{exc.message}**" + (f"\n\nHow to fix: {exc.hint}" if exc.hint else ""))
    else:
        log.exception("UI error")
        st.error(f"**Something went wrong:** {type(exc).__name__}: {exc}\n\n"
                 "Run `kgrag doctor` to check the backends.")


def page(fn: F) -> F:
    """Decorate a page: any error becomes a readable message in the page."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if type(exc).__name__ in {"RerunException", "StopException"}:
                raise  # Streamlit's own control flow
            show_error(exc)
            return None

    return wrapper  # type: ignore[return-value]


def dot_graph(edges: list[tuple[str, str, str]], highlight: set[str] | None = None,
              ) -> str:
    """A Graphviz DOT digraph of (subject, predicate, object) edges."""
    highlight = highlight or set()

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ['digraph G {', 'rankdir=LR;', 'node [shape=box, style="rounded,filled", '
             'fillcolor="#eef3fb", fontname="Helvetica"];', 'edge [fontname="Helvetica", '
             'fontsize=10];']
    for node in sorted({n for s, _, o in edges for n in (s, o)}):
        fill = ', fillcolor="#ffd98e"' if node in highlight else ""
        lines.append(f"{q(node)} [label={q(node)}{fill}];")
    for s, p, o in edges:
        lines.append(f"{q(s)} -> {q(o)} [label={q(p)}];")
    lines.append("}")
    return "\n".join(lines)
