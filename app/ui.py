"""The kgrag Streamlit app: ask, explore the graph, Cypher console, ingest, evaluation.

Run with `kgrag ui` (binds 127.0.0.1), or `streamlit run app/ui.py`.
"""

from __future__ import annotations

import streamlit as st

from app import ui_ask, ui_cypher, ui_eval, ui_explore, ui_ingest

st.set_page_config(page_title="kgrag", page_icon=":material/hub:", layout="wide")

PAGES = [
    (ui_ask.render, "Ask", "chat", "ask"),
    (ui_explore.render, "Graph explorer", "hub", "explore"),
    (ui_cypher.render, "Cypher console", "terminal", "cypher"),
    (ui_ingest.render, "Ingest", "upload_file", "ingest"),
    (ui_eval.render, "Evaluation", "monitoring", "evaluation"),
]
navigation = st.navigation([
    # The default page (Ask) lives at "/"; Streamlit gives it no path of its own.
    st.Page(fn, title=title, icon=f":material/{icon}:", url_path=path, default=(path == "ask"))
    for fn, title, icon, path in PAGES
])
navigation.run()
