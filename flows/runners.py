"""Where ingest tasks run: the task runner the settings choose, and extraction fan-out.

`task_runner = "default"`: Prefect's thread pool in the flow process; extraction runs as
one task with `llm_concurrency` requests in flight (kgrag's in-process limit).

`task_runner = "dask"`: a `prefect_dask.DaskTaskRunner`, on the cluster at `dask_address`
or on a temporary `LocalCluster` of `dask_workers` processes. Extraction fans out one chunk
per task (`extract_chunk`), and the flow keeps at most `extract_concurrency` of them in
flight, so however many workers the cluster has, an LLM server such as vLLM never sees more
requests than that from one ingest run. Results are put back in chunk order, so the graph
and the indexes are the same as with the default runner.

`ingest_corpus` is declared with `TaskRunnerFromSettings()`, so the choice holds however the
flow starts: `kgrag ingest`, a run of `kgrag serve`, or a Prefect worker.

    KGRAG_TASK_RUNNER=dask KGRAG_DASK_WORKERS=4 kgrag ingest docs/
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from core.errors import ConfigError
from core.llm.base import ChatModel, Usage
from core.settings import Settings, get_settings
from flows.progress import report
from kg.extract import ChunkContext, ChunkExtraction, ChunkExtractor


class TaskRunnerFromSettings(TaskRunner[PrefectFuture[Any]]):
    """Stands in for the task runner the settings choose when a flow run starts.

    Prefect calls `duplicate()` at the start of every flow run and runs the flow's tasks on
    what it returns, so the settings read then (KGRAG_TASK_RUNNER, ...) decide, not the
    settings of the process that imported the flow.
    """

    def duplicate(self) -> TaskRunner[Any]:  # type: ignore[override]
        return make_task_runner(get_settings())

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None,
               dependencies: Any = None) -> PrefectFuture[Any]:
        raise RuntimeError("TaskRunnerFromSettings only chooses a runner: use duplicate()")


def make_task_runner(settings: Settings) -> TaskRunner[Any]:
    """A fresh, not yet started task runner for `settings.task_runner`."""
    if settings.task_runner == "default":
        return ThreadPoolTaskRunner()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "task_runner is `dask` but prefect-dask is not installed",
            hint="pip install prefect-dask, or set KGRAG_TASK_RUNNER=default",
        ) from None
    # The cluster's INFO lines (workers joining, leaving) would bury the run's own output.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_class=local_cluster, cluster_kwargs={
        "n_workers": settings.dask_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        # Task runs on the workers report to the flow's API. Without this each worker
        # process would start an ephemeral Prefect API of its own (~10 s each).
        "env": {"PREFECT_API_URL": _current_api_url()},
    })


@contextmanager
def clean_main() -> Iterator[None]:
    """Hide `__main__` while child processes start (spawn / forkserver).

    A spawned process first re-runs the parent's `__main__` script. Inside Streamlit (the
    UI's Ingest page runs the flow in-process, and so does `AppTest`) `__main__` is the page
    script, so every child would run the page; after an `AppTest` in the same process it is
    a deleted temporary file. Children that need nothing from `__main__` start clean here.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def local_cluster(**kwargs: Any) -> Any:
    """A `distributed.LocalCluster` whose worker processes start from a clean `__main__`.

    Under AppTest the workers ran the page script and crashed ("Nanny failed to start");
    they need nothing from `__main__` (the tasks live in `flows.runners`).
    """
    from distributed import LocalCluster

    with clean_main():
        return LocalCluster(**kwargs)


def fans_out(settings: Settings) -> bool:
    """Extraction goes to the task runner one chunk per task (instead of one batch task)."""
    return settings.task_runner != "default"


def extract_fanned_out(settings: Settings, contexts: Sequence[ChunkContext]
                       ) -> tuple[list[ChunkExtraction], Usage]:
    """Extract every chunk as its own task, at most `extract_concurrency` in flight.

    Must run inside a flow run (the tasks go to that run's task runner). Returns the
    results in the order of `contexts` and the LLM usage of all tasks together.
    """
    results: list[ChunkExtraction | None] = [None] * len(contexts)
    usage = Usage()
    in_flight: dict[PrefectFuture[tuple[ChunkExtraction, Usage]], int] = {}
    done = 0

    def collect_one() -> None:
        nonlocal usage, done
        future = next(as_completed(list(in_flight)))
        extraction, spent = future.result()
        results[in_flight.pop(future)] = extraction
        usage += spent
        done += 1
        report("chunks extracted", done, len(contexts))

    for i, ctx in enumerate(contexts):
        while len(in_flight) >= settings.extract_concurrency:
            collect_one()
        in_flight[extract_chunk.submit(settings, ctx)] = i
    while in_flight:
        collect_one()
    return [r for r in results if r is not None], usage


@task(name="extract-chunk", cache_policy=NO_CACHE)
def extract_chunk(settings: Settings, context: ChunkContext) -> tuple[ChunkExtraction, Usage]:
    """One chunk, one LLM call, on whichever worker runs it; returns what it spent."""
    from core.llm.usage import UsageCountingChatModel

    counted = UsageCountingChatModel(_worker_model(settings))
    extraction = ChunkExtractor(counted, output=settings.extract_format).run([context])[0]
    return extraction, counted.usage


# One chat model per worker process and settings (HTTP pools / a loaded GGUF are reused).
_models: dict[str, ChatModel] = {}


def _worker_model(settings: Settings) -> ChatModel:
    key = settings.model_dump_json()
    if key not in _models:
        from core.llm.factory import make_chat_model

        _models[key] = make_chat_model(settings).inner  # counting is per task, above
    return _models[key]


def _current_api_url() -> str:
    """The API this process uses: a configured URL, or the ephemeral server's (in a flow
    run, `get_client` returns the run's client, so no new server starts)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    return (PREFECT_API_URL.value() or str(get_client(sync_client=True).api_url)).rstrip("/")
