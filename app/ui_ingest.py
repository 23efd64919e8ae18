"""Ingest page: upload files or name a folder, run the ingest flow with progress, see
recent runs and their summaries, manage schedules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from app.ui_common import page
from app.ui_schedules import schedules_section
from core.settings import get_settings
from flows.summary import recent_runs


def run_ingest(sources: list[str], extract: bool) -> dict[str, Any]:
    from core.writer_lock import writer_lock
    from flows.ingest import ingest_corpus
    from flows.progress import watching

    bars: dict[str, Any] = {}

    def sink(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = st.progress(0.0, text=stage)
        if total:
            bars[stage].progress(min(done / total, 1.0), text=f"{stage}: {done}/{total}")
        else:  # not known yet: the corpus is still being read
            bars[stage].progress(0.0, text=f"{stage}: {done} so far")

    # Another ingest or delete writing to the data dir: say so at once (the page shows
    # the error) instead of blocking the page until it has finished.
    with writer_lock(get_settings(), "ingest", wait_s=0), watching(sink):
        return ingest_corpus(sources, extract=extract)


def show_summary(s: dict[str, Any]) -> None:
    cols = st.columns(6)
    for col, (label, value) in zip(cols, [
        ("new", s["new"]), ("changed", s["changed"]), ("unchanged", s["unchanged"]),
        ("dropped", len(s["dropped"])), ("failed", len(s["failed"])), ("chunks", s["chunks"]),
    ], strict=True):
        col.metric(label, value)
    st.caption(f"{s['entities']} entities, {s['relations_kept']} relations kept "
               f"({s['relations_dropped']} dropped by the judge), {s['propositions']} "
               f"propositions, {len(s['failed_chunks'])} chunks failed extraction; "
               f"{s['seconds']:.1f} s")
    if s.get("error"):
        st.error(f"The run stopped: {s['error']}")
    problems = [{"what": "failed", **p} for p in s["failed"]] + \
        [{"what": "dropped", **p} for p in s["dropped"]] + \
        [{"what": "failed chunk", **p} for p in s["failed_chunks"]]
    if problems:
        st.dataframe(problems, use_container_width=True)


@page
def render() -> None:
    st.title("Ingest")
    settings = get_settings()
    tab_upload, tab_folder = st.tabs(["Upload files", "A folder on this machine"])
    sources: list[str] = []
    with tab_upload:
        files = st.file_uploader("Files (.txt .md .html .pdf .jsonl .csv)",
                                 accept_multiple_files=True)
    with tab_folder:
        folder = st.text_input("Folder or glob", placeholder="/path/to/docs")
    extract = st.toggle("Build the knowledge graph (LLM extraction)", value=settings.extract)
    if st.button("Start ingest", type="primary"):
        if files:
            target = settings.data_dir / "uploads" / time.strftime("%Y%m%d-%H%M%S")
            target.mkdir(parents=True, exist_ok=True)
            for f in files:
                (target / Path(f.name).name).write_bytes(f.getvalue())
            sources.append(str(target))
        if folder:
            sources.append(folder)
        if not sources:
            st.warning("Upload files or name a folder first.")
        else:
            with st.status("Ingesting ...", expanded=True) as status:
                summary = run_ingest(sources, extract)
                status.update(label="Ingest finished", state="complete")
            show_summary(summary)
    st.subheader("Recent runs")
    runs = recent_runs(settings.runs_dir)
    if not runs:
        st.caption("No runs yet.")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"]))
        flag = " — stopped" if r.get("error") else ""
        with st.expander(f"{when}: {', '.join(r['sources'])[:80]} — {r['new']} new, "
                         f"{len(r['failed'])} failed{flag}"):
            show_summary(r)
    schedules_section()
