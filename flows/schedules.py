"""Scheduled ingest: Prefect deployments of `ingest_corpus` with cron or interval schedules.

A schedule is a deployment named by the user, tagged `kgrag`, whose parameters are the
sources (absolute paths) and the extract switch. The Prefect server's scheduler creates its
runs; `kgrag serve` (flows.serve) runs those of deployments without a work pool, a Prefect
worker runs those of deployments on a pool (`--pool`). Each run is an ordinary incremental
ingest, so it picks up new and changed files only.

    >>> add_schedule(["/data/docs"], cron="*/15 * * * *", name="docs")   # doctest: +SKIP
    >>> [s.name for s in list_schedules()]                               # doctest: +SKIP
    ['docs']
    >>> pause_schedule("docs"); resume_schedule("docs"); remove_schedule("docs")  # doctest: +SKIP

Every function here needs a Prefect server (see flows.prefect_server for which one).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx

from core.errors import ConfigError, KgragError, ServiceError
from core.settings import Settings, get_settings
from flows.prefect_server import prefect_api

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse

FLOW_NAME = "ingest_corpus"
#: Deployments kgrag made carry this tag; `list` and `serve` see only those.
TAG = "kgrag"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Seconds a pause waits for a scheduler pass that began before it (see pause_schedule).
PAUSE_SETTLE_S = 1.0


@dataclass
class IngestSchedule:
    """One scheduled ingest, as `kgrag schedule list` shows it."""

    name: str
    sources: list[str]
    schedule: str  # "cron */15 * * * * (UTC)" or "every 300s"
    extract: bool | None  # None: the `extract` setting of whoever runs it
    paused: bool
    pool: str  # work pool; "" = run by `kgrag serve`
    id: str
    remove_missing: bool | None = None  # None: the `remove_missing_files` setting

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def add_schedule(
    sources: Sequence[str],
    *,
    cron: str | None = None,
    interval_s: float | None = None,
    name: str | None = None,
    extract: bool | None = None,
    remove_missing: bool | None = None,
    pool: str | None = None,
    timezone: str = "UTC",
    settings: Settings | None = None,
) -> IngestSchedule:
    """Create the deployment of a scheduled ingest of `sources` (exactly one of cron,
    interval_s). Refuses a name that exists; paths are stored absolute. `remove_missing`:
    each run deletes the documents whose files were removed from the sources."""
    from prefect.deployments.runner import DeploymentApplyError, RunnerDeployment
    from prefect.types.entrypoint import EntrypointType

    from flows.ingest import ingest_corpus

    schedule = _schedule(cron, interval_s, timezone)
    paths = _absolute_sources(sources, must_exist=pool is None)
    name = name or default_name(paths)
    if not _NAME.match(name):
        raise ConfigError(f"bad schedule name {name!r}",
                          hint="use letters, digits, '.', '_' and '-' (at most 100)")
    with _client(settings) as client:
        if _find(client, name) is not None:
            raise ConfigError(f"a schedule named {name!r} exists already",
                              hint=f"pick another --name, or `kgrag schedule remove {name}`")
        deployment = RunnerDeployment.from_flow(
            ingest_corpus,
            name=name,
            schedules=[schedule],
            parameters={"sources": paths, "extract": extract,
                        "remove_missing": remove_missing},
            tags=[TAG],
            description=f"kgrag: scheduled ingest of {', '.join(paths)}",
            work_pool_name=pool,
            # A module path: workers import kgrag (installed there); no code is copied.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        try:
            deployment.apply()
        except DeploymentApplyError as exc:
            hint = (f"create the pool and start a worker for it: infra/worker.sh {pool}"
                    if pool and "work pool" in str(exc).lower() else
                    "check the server's log (kgrag server status shows where it is)")
            raise ConfigError(f"the Prefect server refused the schedule: {exc}",
                              hint=hint) from None
        found = _find(client, name)
    assert found is not None  # just created
    return _record(found)


def list_schedules(settings: Settings | None = None) -> list[IngestSchedule]:
    """Every scheduled ingest kgrag created, by name."""
    with _client(settings) as client:
        return [_record(d) for d in kgrag_deployments(client)]


def pause_schedule(name: str, settings: Settings | None = None,
                   settle_s: float = PAUSE_SETTLE_S) -> IngestSchedule:
    """No new runs until resumed (a run in progress finishes).

    Runs of a paused deployment that are still waiting would start anyway (neither the
    server's scheduled-runs query nor `kgrag serve` nor a worker looks at `paused`), so
    pausing deletes them. Pausing itself deletes only future runs; overdue ("Late") ones
    go here too. The server's scheduler reads the deployments and inserts their runs in
    separate transactions, so one that read before the pause can still insert runs
    after it: they are deleted once more after `settle_s`, and `kgrag serve` keeps
    deleting any that appear later (flows.serve).
    """
    with _client(settings) as client:
        d = _get(client, name)
        client.pause_deployment(d.id)
        drop_waiting_runs(client, d.id)
        if settle_s > 0:
            time.sleep(settle_s)
            drop_waiting_runs(client, d.id)
        return _record(_get(client, name))


def resume_schedule(name: str, settings: Settings | None = None) -> IngestSchedule:
    with _client(settings) as client:
        d = _get(client, name)
        client.resume_deployment(d.id)
        return _record(_get(client, name))


def remove_schedule(name: str, settings: Settings | None = None) -> None:
    """Delete the deployment and its scheduled runs (the ingested data stays)."""
    with _client(settings) as client:
        client.delete_deployment(_get(client, name).id)


def drop_waiting_runs(client: SyncPrefectClient, deployment_id: UUID, *,
                      due_only: bool = False, keep: int = 0) -> int:
    """Delete the deployment's auto-scheduled runs that have not started, oldest kept
    first (`keep` of them); `due_only`: only those whose start time has come. Returns how
    many were deleted."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import ObjectNotFound

    waiting = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )
    now = datetime.now(UTC)
    doomed = [r for r in waiting if r.auto_scheduled and not (
        due_only and r.expected_start_time is not None and r.expected_start_time > now)]
    deleted = 0
    for run in doomed[keep:]:
        with contextlib.suppress(ObjectNotFound):  # started or deleted meanwhile
            client.delete_flow_run(run.id)
            deleted += 1
    return deleted


def drop_runs_of_paused(client: SyncPrefectClient, deployment_ids: set[UUID]) -> int:
    """Delete the waiting auto-scheduled runs of those of these deployments that are
    paused (runs the scheduler inserted after the pause). Returns how many."""
    return sum(drop_waiting_runs(client, d.id) for d in kgrag_deployments(client)
               if d.paused and d.id in deployment_ids)


def kgrag_deployments(client: SyncPrefectClient) -> list[DeploymentResponse]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterName,
    )

    found = client.read_deployments(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
        deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])),
    )
    return sorted(found, key=lambda d: d.name)


def default_name(paths: Sequence[str]) -> str:
    """`ingest-<folder>` from the first source, e.g. /data/my docs -> ingest-my-docs."""
    stem = Path(paths[0].rstrip("/")).name if paths else ""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "corpus"
    return f"ingest-{slug}"[:100]


def describe(d: DeploymentResponse) -> str:
    parts = []
    for s in d.schedules:
        sched: Any = s.schedule
        if getattr(sched, "cron", None):
            text = f"cron {sched.cron} ({sched.timezone or 'UTC'})"
        elif getattr(sched, "interval", None) is not None:
            text = f"every {sched.interval.total_seconds():g}s"
        else:
            text = str(sched)
        parts.append(text if s.active else f"{text} [inactive]")
    return "; ".join(parts) or "none"


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _client(settings: Settings | None) -> Iterator[SyncPrefectClient]:
    """A Prefect client on the resolved server; API failures become ServiceErrors."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    s = settings or get_settings()
    with prefect_api(s, server=True) as api:
        try:
            with get_client(sync_client=True) as client:
                yield client
        except KgragError:
            raise
        except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
            raise ServiceError(f"the Prefect API at {api.url} failed: {exc}",
                               hint="check that the server runs: kgrag server status") from exc


def _schedule(cron: str | None, interval_s: float | None, timezone: str) -> Any:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from pydantic import ValidationError

    if (cron is None) == (interval_s is None):
        raise ConfigError("a schedule needs exactly one of --cron and --interval",
                          hint='e.g. --cron "*/15 * * * *" or --interval 900')
    try:
        if cron is not None:
            return CronSchedule(cron=cron, timezone=timezone)
        if interval_s is None or interval_s <= 0:
            raise ConfigError(f"--interval must be positive, got {interval_s}",
                              hint="seconds between runs, e.g. --interval 900")
        return IntervalSchedule(interval=timedelta(seconds=interval_s), timezone=timezone)
    except ValidationError as exc:
        what = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"bad schedule: {what}",
                          hint='cron has five fields, e.g. "*/15 * * * *"; timezones are '
                          'IANA names such as "Europe/Berlin"') from None


def _absolute_sources(sources: Sequence[str], must_exist: bool) -> list[str]:
    if not sources:
        raise ConfigError("a schedule needs at least one --source",
                          hint="--source PATH (a folder, file or glob); repeat for more")
    paths = []
    for src in sources:
        path = Path(src).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        is_glob = any(ch in src for ch in "*?[")
        if must_exist and not is_glob and not path.exists():
            raise ConfigError(f"no such file or folder: {src}",
                              hint="scheduled runs read the path on this machine; create it "
                              "first or correct it")
        paths.append(str(path.resolve() if path.exists() else path))
    return paths


def _find(client: SyncPrefectClient, name: str) -> DeploymentResponse | None:
    from prefect.exceptions import ObjectNotFound

    try:
        d = client.read_deployment_by_name(f"{FLOW_NAME}/{name}")
    except ObjectNotFound:
        return None
    return d if TAG in (d.tags or []) else None


def _get(client: SyncPrefectClient, name: str) -> DeploymentResponse:
    d = _find(client, name)
    if d is None:
        raise ConfigError(f"no schedule named {name!r}",
                          hint="`kgrag schedule list` shows the names")
    return d


def _record(d: DeploymentResponse) -> IngestSchedule:
    params = d.parameters or {}
    return IngestSchedule(
        name=d.name,
        sources=list(params.get("sources", [])),
        schedule=describe(d),
        extract=params.get("extract"),
        paused=bool(d.paused),
        pool=d.work_pool_name or "",
        id=str(d.id),
        remove_missing=params.get("remove_missing"),
    )
