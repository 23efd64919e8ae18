"""Graph explorer page: find an entity, see its card and neighbourhood, walk along edges."""

from __future__ import annotations

import streamlit as st
from rapidfuzz import fuzz

from app.ui_common import components, dot_graph, page
from core.models import Entity
from flows.components import ENTITY_INDEX


def search_entities(query: str, limit: int = 10) -> list[tuple[Entity, float]]:
    """Name matches (contains, fuzzy) and embedding neighbours, best first."""
    c = components()
    found: dict[str, Entity] = {e.id: e for e in c.graph.find_entities(query, limit=limit)}
    index = c.index(ENTITY_INDEX)
    if len(index):
        hits = index.search(c.embedder.embed([query]), limit)[0]
        for e in c.graph.get_entities([h.id for h in hits]):
            found.setdefault(e.id, e)
    scored = [(e, max(fuzz.WRatio(query, n) for n in (e.name, *e.aliases)) / 100)
              for e in found.values()]
    return sorted(scored, key=lambda x: -x[1])[:limit]


def entity_card(entity: Entity) -> None:
    c = components()
    st.subheader(entity.name)
    st.markdown(f"**Type:** {entity.type or '—'}  \n**Description:** "
                f"{entity.description or '—'}  \n**Aliases:** "
                f"{', '.join(entity.aliases) or '—'}  \n**Id:** `{entity.id}`")
    docs = c.graph.entity_documents(entity.id)
    if docs:
        st.markdown("**Mentioned in:** " + "; ".join(f"{d.title or d.id} (`{d.source}`)"
                                                     for d in docs))


@page
def render() -> None:
    st.title("Graph explorer")
    c = components()
    query = st.text_input("Find an entity", value=st.session_state.get("explore_query", ""),
                          placeholder="e.g. Marie Curie")
    if not query and "explore_entity" not in st.session_state:
        st.info("Type a name: matching is fuzzy and also finds entities by meaning.")
        return
    if query and query != st.session_state.get("explore_query"):
        st.session_state["explore_query"] = query
        st.session_state.pop("explore_entity", None)
    if "explore_entity" not in st.session_state:
        matches = search_entities(query)
        if not matches:
            st.warning(f"No entity matches {query!r}. Has the corpus been ingested with "
                       "extraction on?")
            return
        labels = [f"{e.name} ({e.type or 'untyped'}) — {score:.0%}" for e, score in matches]
        pick = st.radio("Matches", range(len(matches)), format_func=lambda i: labels[i])
        st.session_state["explore_entity"] = matches[int(pick or 0)][0].id
    entity_id = st.session_state["explore_entity"]
    found = c.graph.get_entities([entity_id])
    if not found:
        st.warning("That entity is no longer in the graph.")
        st.session_state.pop("explore_entity")
        return
    entity = found[0]
    left, right = st.columns([1, 2])
    with left:
        entity_card(entity)
    neighbours = c.graph.neighbours(entity.id, limit=40)
    edges = [(entity.name, n.predicate, n.entity.name) if n.outgoing
             else (n.entity.name, n.predicate, entity.name) for n in neighbours]
    with right:
        if edges:
            st.graphviz_chart(dot_graph(edges, highlight={entity.name}))
        else:
            st.info("No relations: this entity is only mentioned in text.")
    if neighbours:
        st.markdown("**Move along an edge:**")
        cols = st.columns(4)
        for i, n in enumerate(neighbours):
            arrow = f"—{n.predicate}→" if n.outgoing else f"←{n.predicate}—"
            if cols[i % 4].button(f"{arrow} {n.entity.name}", key=f"nb-{i}-{n.entity.id}"):
                st.session_state["explore_entity"] = n.entity.id
                st.rerun()
