"""Prefect flows: ingest, delete, reindex, evaluate, distill."""

import os

# Set before Prefect is imported anywhere below: no telemetry from a local tool.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
