"""Prefect flows: ingest, delete, reindex, evaluate, distill."""

import os

# Set before Prefect is imported anywhere below: no telemetry from a local tool.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's ephemeral API server gets 20 s to start by default; a busy 2-core machine
# needs more (seen: a timeout under load).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
