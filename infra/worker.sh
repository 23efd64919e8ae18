#!/usr/bin/env bash
# A Prefect work pool for kgrag's scheduled ingests, and a process worker that runs them.
#
#   PREFECT_API_URL=http://prefect-server:4200/api infra/worker.sh [POOL]
#
# Deployments made with `kgrag schedule add --pool POOL ...` run here, each in a
# subprocess of this worker with this shell's KGRAG_* settings (graph store, LLM server,
# data dir). The pool runs one ingest at a time: all runs write the same graph and vector
# indexes. Parallelism comes from inside a run: KGRAG_TASK_RUNNER=dask fans extraction
# out to a Dask cluster (KGRAG_DASK_ADDRESS), bounded by KGRAG_EXTRACT_CONCURRENCY.
set -euo pipefail

POOL="${1:-${KGRAG_WORK_POOL:-kgrag}}"
: "${PREFECT_API_URL:?set PREFECT_API_URL to your Prefect server, e.g. http://127.0.0.1:4200/api}"
HERE="$(cd "$(dirname "$0")" && pwd)"
if [[ -z "${PREFECT:-}" ]]; then
  # This checkout's virtualenv (make setup), else the image's / PATH's prefect.
  if [[ -x "$HERE/../.venv/bin/prefect" ]]; then PREFECT="$HERE/../.venv/bin/prefect"
  else PREFECT="$(command -v prefect || true)"; fi
fi
[[ -n "$PREFECT" ]] || { echo "worker.sh: prefect not found (pip install kgrag)" >&2; exit 1; }
export PREFECT_SERVER_ANALYTICS_ENABLED=false

# The server may still be starting (compose starts everything at once): wait, bounded.
for _ in $(seq 1 60); do
  if "$PREFECT" work-pool ls >/dev/null 2>&1; then break; fi
  sleep 2
done

if ! "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
  # Another worker may create it at the same moment; that is fine.
  "$PREFECT" work-pool create "$POOL" --type process >/dev/null 2>&1 \
    || "$PREFECT" work-pool inspect "$POOL" >/dev/null
fi
"$PREFECT" work-pool set-concurrency-limit "$POOL" 1 >/dev/null
echo "kgrag worker: pool '$POOL' (one run at a time) at $PREFECT_API_URL"
exec "$PREFECT" worker start --pool "$POOL" --type process --name "kgrag-$(hostname)-$$"
