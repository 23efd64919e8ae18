"""Cypher console page: examples, a question the local model turns into an editable query,
read-only execution, table, CSV download."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import streamlit as st

from app.ui_common import components, page

EXAMPLES = {
    "Facts with their source": "MATCH (s:Entity)-[r:RELATES]->(o:Entity)\n"
    "RETURN s.name AS subject, r.predicate AS predicate, o.name AS object, "
    "r.chunk_id AS chunk\nLIMIT 25",
    "Most mentioned entities": "MATCH (e:Entity)-[:MENTIONED_IN]->(c:Chunk)\n"
    "RETURN e.name AS entity, e.type AS type, count(c) AS mentions\n"
    "ORDER BY mentions DESC LIMIT 20",
    "Documents and chunk counts": "MATCH (c:Chunk)-[:PART_OF]->(d:Document)\n"
    "RETURN d.title AS title, d.source AS source, count(c) AS chunks ORDER BY title",
    "Two-hop paths": "MATCH (a:Entity)-[r1:RELATES]->(b:Entity)-[r2:RELATES]->(c:Entity)\n"
    "RETURN a.name, r1.predicate, b.name, r2.predicate, c.name LIMIT 20",
    "Propositions about an entity": "MATCH (p:Proposition)-[:ABOUT]->(e:Entity)\n"
    "WHERE e.name = $name RETURN p.text AS proposition",
}


def _cell(v: Any) -> Any:
    return json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, dict | list) else v


def write_query(question: str, key: str) -> None:
    """Have the local model write the query for `question` into the text area `key`
    (before the area is drawn, so the user sees and can edit it before running it)."""
    from retrieval.text_to_cypher import CypherQueryWriter

    c = components()
    with st.spinner("The local model is writing the query ..."):
        draft = CypherQueryWriter(c.llm, c.graph).write(question)
    st.session_state[key] = draft.query
    if draft.error:
        st.warning(f"Its trial run failed: {draft.error}. Edit the query before running it.")
    else:
        st.caption(f"Written by {c.llm.model_name}: check it, edit it if needed, then Run.")


@page
def render() -> None:
    st.title("Cypher console")
    st.caption("Read-only: queries that would write are refused. Parameters are JSON.")
    example = st.selectbox("Example queries", list(EXAMPLES))
    key = f"q-{example}"
    st.session_state.setdefault(key, EXAMPLES[example])
    question = st.text_input("Ask in words", placeholder="Which documents mention Warsaw?",
                             help="The local model writes a read-only query from the "
                             "graph's schema into the query box; press Enter.")
    if question and st.session_state.get("asked") != question:
        write_query(question, key)
        st.session_state["asked"] = question
    query = st.text_area("Query", height=140, key=key)
    cols = st.columns(3)
    limit = cols[0].number_input("Row limit", min_value=1, max_value=100_000, value=200)
    timeout = cols[1].number_input("Timeout (s)", min_value=1.0, max_value=600.0, value=30.0)
    raw_params = cols[2].text_input("Parameters", value='{"name": "Marie Curie"}'
                                    if "$name" in query else "{}")
    if not st.button("Run", type="primary"):
        return
    try:
        params = json.loads(raw_params or "{}")
    except json.JSONDecodeError as exc:
        st.error(f"Parameters must be a JSON object: {exc}")
        return
    result = components().graph.read_query(query, params, limit=int(limit),
                                           timeout_s=float(timeout))
    rows = [{c: _cell(r.get(c)) for c in result.columns} for r in result.rows]
    st.dataframe(rows, use_container_width=True)
    note = " (truncated — raise the row limit)" if result.truncated else ""
    st.caption(f"{len(rows)} rows{note}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=result.columns)
    writer.writeheader()
    writer.writerows(rows)
    st.download_button("Download CSV", buf.getvalue(), file_name="kgrag-query.csv",
                       mime="text/csv")
