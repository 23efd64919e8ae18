"""Evaluation page: the latest benchmark results (bench/out) with their plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from app.ui_common import page

BENCH_DIRS = [Path.cwd() / "bench" / "out", Path(__file__).resolve().parent.parent / "bench"
              / "out"]


def bench_dir() -> Path | None:
    return next((d for d in BENCH_DIRS if d.is_dir() and any(d.glob("*.json"))), None)


def _table(data: Any) -> list[dict[str, Any]] | None:
    for key in ("rows", "results", "table"):
        if isinstance(data, dict) and isinstance(data.get(key), list):
            return [r for r in data[key] if isinstance(r, dict)]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    return None


@page
def render() -> None:
    st.title("Evaluation")
    where = bench_dir()
    if where is None:
        st.info("No benchmark results yet. Run the scripts in `bench/` (see bench/README.md); "
                "they write JSON and plots to bench/out/.")
        return
    st.caption(f"Results from {where}")
    for result in sorted(where.glob("*.json")):
        with st.expander(result.stem, expanded=True):
            data = json.loads(result.read_text())
            rows = _table(data)
            if rows:
                st.dataframe(rows, use_container_width=True)
            else:
                st.json(data, expanded=False)
            plot = result.with_suffix(".png")
            if plot.exists():
                st.image(str(plot))
