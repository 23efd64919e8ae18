"""The Ingest page's schedules: list, create, pause / resume and remove scheduled ingests
(Prefect deployments of `ingest_corpus`, flows.schedules). They need a Prefect server;
without one the section says how to start it."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import streamlit as st

from app.ui_common import show_error
from core.errors import KgragError


def schedules_section() -> None:
    st.subheader("Schedules")
    from flows import schedules

    if notice := st.session_state.pop("schedule_notice", None):
        st.success(notice)
    try:
        items = schedules.list_schedules()
    except KgragError as exc:
        # e.g. "schedules need a Prefect server, and none is configured" + how to start one
        message, hint = exc.message.rstrip("."), exc.hint.rstrip(".")
        st.info(f"{message[:1].upper()}{message[1:]}."
                + (f" How to fix: {hint}." if hint else "")
                + " `kgrag serve` then runs the scheduled ingests.")
        return
    if not items:
        st.caption("No schedules yet.")
    for s in items:
        state = ":orange-badge[paused]" if s.paused else ":green-badge[active]"
        runner = f"work pool `{s.pool}`" if s.pool else "`kgrag serve`"
        cols = st.columns([6, 1, 1])
        cols[0].markdown(f"**{s.name}** {state} {s.schedule} — {', '.join(s.sources)} "
                         f"(run by {runner})")
        toggle = "Resume" if s.paused else "Pause"
        if cols[1].button(toggle, key=f"toggle-{s.name}"):
            change = schedules.resume_schedule if s.paused else schedules.pause_schedule
            act(partial(change, s.name), f"{s.name} {'resumed' if s.paused else 'paused'}")
        if cols[2].button("Remove", key=f"remove-{s.name}"):
            act(partial(schedules.remove_schedule, s.name), f"{s.name} removed")
    add_schedule_form()


def add_schedule_form() -> None:
    from flows import schedules

    with st.form("add-schedule", clear_on_submit=False):
        st.markdown("**New schedule**")
        source = st.text_input("Folder or glob to ingest", placeholder="/path/to/docs",
                               key="schedule-source")
        name = st.text_input("Name (optional)", placeholder="ingest-docs", key="schedule-name")
        every = st.radio("Run", ["on a cron schedule", "every N seconds"], horizontal=True,
                         key="schedule-kind")
        cron = st.text_input("Cron (UTC)", value="*/15 * * * *", key="schedule-cron")
        interval = st.number_input("Seconds between runs", min_value=10, value=900, step=60,
                                   key="schedule-interval")
        extract = st.checkbox("Build the knowledge graph (LLM extraction)", value=True)
        if not st.form_submit_button("Add schedule"):
            return
    if not source.strip():
        st.warning("Name a folder or glob to ingest.")
        return
    by_cron = every == "on a cron schedule"
    act(lambda: schedules.add_schedule(
        [source.strip()], cron=cron if by_cron else None,
        interval_s=None if by_cron else float(interval), name=name.strip() or None,
        extract=extract), "schedule added")


def act(action: Callable[[], object], done: str) -> None:
    """Run a schedule change; a mistake (bad cron, unknown path, ...) shows as a message."""
    try:
        action()
    except Exception as exc:
        show_error(exc)
        return
    st.session_state["schedule_notice"] = done
    st.rerun()
