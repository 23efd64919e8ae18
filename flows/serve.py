"""`kgrag serve`: run scheduled ingests on this machine with Prefect's `Runner`.

The Prefect server's scheduler creates the runs of every schedule (flows.schedules); this
loop polls for those of deployments without a work pool and runs each in a subprocess with
this process's environment (so the same KGRAG_* settings). Schedules added while it runs
are picked up within `sync_s` seconds. A paused schedule gets no new runs, and the loop
deletes, every poll, the waiting runs that the server's scheduler can still insert just
after a pause (flows.schedules.pause_schedule says why): the runner would start them.

One ingest runs at a time: every schedule writes the same graph and vector indexes, and two
runs writing one FAISS index at once would lose vectors. A run that comes due while
another runs waits for it; more of the same schedule are dropped (one run ingests the
folder as it is then, which covers them). Stopping the loop leaves the schedules as they
are (Prefect's default would pause them).

    >>> serve_schedules()          # doctest: +SKIP  (until Ctrl-C)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING
from uuid import UUID

from core.settings import Settings, get_settings
from flows.prefect_server import prefect_api
from flows.schedules import drop_runs_of_paused, drop_waiting_runs, kgrag_deployments

if TYPE_CHECKING:
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.runner import Runner

#: At most this many flow runs at once (see the module docstring).
RUN_LIMIT = 1
#: Prefect's default runner poll (PREFECT_RUNNER_POLL_FREQUENCY) when none is given.
DEFAULT_POLL_S = 10.0


def serve_schedules(settings: Settings | None = None, *, poll_s: float | None = None,
                    sync_s: float = 15.0) -> None:
    """Run due scheduled ingests until interrupted (Ctrl-C, SIGTERM).

    `poll_s`: how often to ask the server for due runs (default: Prefect's
    PREFECT_RUNNER_POLL_FREQUENCY, 10 s); `sync_s`: how often to look for new schedules.
    """
    s = settings or get_settings()
    with prefect_api(s, server=True):
        asyncio.run(_serve(poll_s, sync_s))


async def _serve(poll_s: float | None, sync_s: float) -> None:
    import socket

    from prefect.runner import Runner

    runner = Runner(name=f"kgrag-serve-{socket.gethostname()}", limit=RUN_LIMIT,
                    query_seconds=poll_s, pause_on_shutdown=False)
    served: set[UUID] = set()
    await _serve_new_schedules(runner, served)
    start = asyncio.create_task(runner.start())
    await _stop_on_sigterm(runner, start)
    sync = asyncio.create_task(_keep_in_sync(runner, served, sync_s))
    sweep = asyncio.create_task(_keep_paused_empty(served, poll_s or DEFAULT_POLL_S))
    try:
        await start
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # Ctrl-C: asyncio.run turns it into KeyboardInterrupt
        # else SIGTERM cancelled the runner: a normal stop
    finally:
        sync.cancel()
        sweep.cancel()


async def _stop_on_sigterm(runner: Runner, start: asyncio.Task[None]) -> None:
    """SIGTERM stops like Ctrl-C does. (Prefect's own handler, installed by
    `Runner.start`, exits from inside the event loop and leaves tracebacks.)"""
    while not runner.started and not start.done():
        await asyncio.sleep(0.05)
    with contextlib.suppress(ValueError, NotImplementedError):  # not the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, start.cancel)


async def _keep_in_sync(runner: Runner, served: set[UUID], every_s: float) -> None:
    """Serve new schedules; coalesce runs that piled up while another run ran."""
    from prefect.logging import get_logger

    log = get_logger("kgrag.serve")
    while True:
        await asyncio.sleep(every_s)
        try:
            await _serve_new_schedules(runner, served)
            if n := await asyncio.to_thread(_coalesce_overdue_runs, set(served)):
                log.info("dropped %d overdue runs (a later run covers them)", n)
        except Exception as exc:  # the server may restart; the next round retries
            log.warning("could not read the schedules: %s", exc)


async def _keep_paused_empty(served: set[UUID], every_s: float) -> None:
    """As often as the runner polls: delete the waiting runs of paused schedules."""
    from prefect.logging import get_logger

    log = get_logger("kgrag.serve")
    while True:
        await asyncio.sleep(every_s)
        try:
            if n := await asyncio.to_thread(_drop_runs_of_paused, set(served)):
                log.info("deleted %d runs of paused schedules", n)
        except Exception as exc:  # the server may restart; the next round retries
            log.warning("could not read the schedules: %s", exc)


def _drop_runs_of_paused(served: set[UUID]) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return drop_runs_of_paused(client, served)


async def _serve_new_schedules(runner: Runner, served: set[UUID]) -> None:
    """Register with the runner every kgrag schedule it does not serve yet."""
    from prefect.logging import get_logger
    from prefect.types.entrypoint import EntrypointType

    from flows.ingest import ingest_corpus
    from flows.schedules import describe

    log = get_logger("kgrag.serve")
    for d in await asyncio.to_thread(_unserved_schedules, served):
        # Re-applies the deployment as it is stored (schedules, paused state,
        # parameters) and tells the runner to run its flow runs with this flow object.
        deployment_id = await runner.aadd_flow(
            ingest_corpus,
            name=d.name,
            schedules=[{"schedule": x.schedule, "active": x.active} for x in d.schedules],
            paused=d.paused,
            parameters=d.parameters,
            tags=d.tags,
            description=d.description,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        served.add(deployment_id)
        log.info("serving schedule %r: %s%s", d.name, describe(d),
                 " (paused)" if d.paused else "")


def _unserved_schedules(served: set[UUID]) -> list[DeploymentResponse]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [d for d in kgrag_deployments(client)
                if not d.work_pool_name and d.id not in served]


def _coalesce_overdue_runs(served: set[UUID]) -> int:
    """Keep one overdue run per schedule (the oldest, which the runner takes next): any
    one run ingests the folder as it is now."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return sum(drop_waiting_runs(client, d, due_only=True, keep=1) for d in served)
