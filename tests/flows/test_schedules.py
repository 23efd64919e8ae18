"""Scheduled ingest on real parts: a Prefect server (`kgrag server start`, SQLite under a
temp data dir), deployments made by `kgrag schedule`, and `kgrag serve` in its own process
running the scheduled runs against the shared FalkorDB.

Every wait is bounded; every process started here is stopped (its process group killed)
even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from core.settings import get_settings
from flows.components import Components
from tests.corpus import CORPUS
from tests.processes import kill_group, running_prefect_server

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

pytestmark = pytest.mark.services

KGRAG = str(Path(sys.executable).parent / "kgrag")
runner = CliRunner()

NEW_DOC = ("Rosalind Franklin was a chemist born in London. Her X-ray photographs showed "
           "the double helix structure of DNA at King's College.")
PAUSED_DOC = ("Gregor Mendel was a friar born in Heinzendorf. He bred pea plants in the "
              "garden of the abbey in Brno and found the laws of heredity.")


def kgrag(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def wait_for(check: Callable[[], Any], timeout_s: float, what: str,
             every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`kgrag server start` in a temp data dir; its API URL. Stopped with `kgrag server
    stop`, which must leave no process behind."""
    # Runs for a resumed schedule appear within seconds, not the default minute.
    with running_prefect_server(tmp_path_factory.mktemp("prefect-server"),
                                {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "3"}) as url:
        yield url


@pytest.fixture
def api(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KGRAG_PREFECT_API_URL", prefect_server)
    get_settings.cache_clear()
    return prefect_server


def test_schedule_commands_manage_deployments(kgrag_env: Path, api: str,
                                              tmp_path: Path) -> None:
    docs = tmp_path / "my docs"
    docs.mkdir()
    code, out = kgrag("schedule", "add", "--source", str(docs), "--cron", "*/15 * * * *")
    assert code == 0 and "ingest-my-docs" in out
    code, out = kgrag("schedule", "list", "--json")
    (s,) = json.loads(out)
    assert s["name"] == "ingest-my-docs" and s["sources"] == [str(docs)]
    assert s["schedule"] == "cron */15 * * * * (UTC)" and not s["paused"] and s["pool"] == ""
    assert kgrag("schedule", "pause", "ingest-my-docs")[0] == 0
    assert json.loads(kgrag("schedule", "list", "--json")[1])[0]["paused"] is True
    assert kgrag("schedule", "resume", "ingest-my-docs")[0] == 0
    assert json.loads(kgrag("schedule", "list", "--json")[1])[0]["paused"] is False
    assert kgrag("schedule", "remove", "ingest-my-docs")[0] == 0
    assert json.loads(kgrag("schedule", "list", "--json")[1]) == []


def schedules_page() -> None:
    from app.ui_common import page
    from app.ui_schedules import schedules_section

    page(schedules_section)()


def test_ingest_page_creates_pauses_and_removes_schedules(kgrag_env: Path, api: str,
                                                          tmp_path: Path) -> None:
    """The Ingest page's schedule section (Streamlit AppTest) on the real Prefect server."""
    from streamlit.testing.v1 import AppTest

    docs = tmp_path / "ui docs"
    docs.mkdir()
    at = AppTest.from_function(schedules_page, default_timeout=120).run()
    assert not at.exception and "No schedules yet." in [c.value for c in at.caption]
    at.text_input(key="schedule-source").set_value(str(docs))
    at.text_input(key="schedule-name").set_value("from-the-ui")
    at.radio(key="schedule-kind").set_value("every N seconds")
    at.number_input(key="schedule-interval").set_value(600)
    next(b for b in at.button if b.label == "Add schedule").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == ["schedule added"]
    row = next(m.value for m in at.markdown if "from-the-ui" in m.value)
    assert "active" in row and "every 600s" in row and str(docs) in row
    (s,) = json.loads(kgrag("schedule", "list", "--json")[1])
    assert s["name"] == "from-the-ui" and s["sources"] == [str(docs)] and not s["paused"]

    at.button(key="toggle-from-the-ui").click().run()
    assert json.loads(kgrag("schedule", "list", "--json")[1])[0]["paused"] is True
    assert "paused" in next(m.value for m in at.markdown if "from-the-ui" in m.value)
    assert at.button(key="toggle-from-the-ui").label == "Resume"

    # A mistake is a message in the page, not a traceback, and changes nothing.
    at.text_input(key="schedule-source").set_value(str(tmp_path / "nope"))
    at.text_input(key="schedule-name").set_value("broken")
    next(b for b in at.button if b.label == "Add schedule").click().run()
    assert not at.exception and "no such file" in at.error[0].value
    assert len(json.loads(kgrag("schedule", "list", "--json")[1])) == 1

    at.button(key="remove-from-the-ui").click().run()
    assert json.loads(kgrag("schedule", "list", "--json")[1]) == []
    assert "No schedules yet." in [c.value for c in at.caption]


def test_schedule_mistakes_are_one_line_with_a_fix(kgrag_env: Path, api: str,
                                                   tmp_path: Path) -> None:
    env = {**os.environ}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KGRAG, "schedule", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    cases = [
        (["add", "--source", str(tmp_path), "--cron", "*/99 * *"], "bad schedule"),
        (["add", "--source", str(tmp_path)], "exactly one of --cron and --interval"),
        (["add", "--source", str(tmp_path / "nope"), "--interval", "60"], "no such file"),
        (["pause", "no-such-schedule"], "no schedule named 'no-such-schedule'"),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "fix:" in proc.stderr
        assert "Traceback" not in proc.stderr
    # No server configured at all: says how to get one.
    env.pop("KGRAG_PREFECT_API_URL")
    proc = run("list")
    assert proc.returncode == 2 and "kgrag server start" in proc.stderr


def test_scheduled_runs_ingest_new_files_pause_stops_them_remove_deletes(
        kgrag_env: Path, api: str, tmp_path: Path) -> None:
    from prefect.exceptions import ObjectNotFound

    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "curie.txt").write_text(CORPUS["curie.txt"])
    code, _ = kgrag("schedule", "add", "--source", str(watched), "--interval", "5",
                    "--no-extract", "--name", "watched")
    assert code == 0

    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        serve = subprocess.Popen([KGRAG, "serve", "--poll", "1"], env=dict(os.environ),
                                 stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t = time.perf_counter()
        wait_for(lambda: _ingested("curie.txt"), 150, "the first scheduled run")
        first_s = time.perf_counter() - t
        (watched / "franklin.txt").write_text(NEW_DOC)
        t = time.perf_counter()
        wait_for(lambda: _ingested("franklin.txt"), 120, "the new file ingested")
        print(f"first scheduled run done after {first_s:.1f}s; new file ingested "
              f"{time.perf_counter() - t:.1f}s after it was dropped")

        assert kgrag("schedule", "pause", "watched")[0] == 0
        deployment_id = _deployment_id("watched")
        wait_for(lambda: not _runs(deployment_id, "PENDING", "RUNNING"), 120,
                 "the run in progress to finish")
        started = len(_runs(deployment_id, "PENDING", "RUNNING", "COMPLETED", "FAILED",
                            "CRASHED"))
        (watched / "mendel.txt").write_text(PAUSED_DOC)
        time.sleep(15)  # three intervals
        assert not _runs(deployment_id, "SCHEDULED", "PENDING", "RUNNING")
        assert len(_runs(deployment_id, "PENDING", "RUNNING", "COMPLETED", "FAILED",
                         "CRASHED")) == started
        assert not _ingested("mendel.txt")

        assert kgrag("schedule", "resume", "watched")[0] == 0
        wait_for(lambda: _ingested("mendel.txt"), 120, "ingest after resume")

        assert kgrag("schedule", "remove", "watched")[0] == 0
        with pytest.raises(ObjectNotFound):
            _deployment_id("watched")
        assert json.loads(kgrag("schedule", "list", "--json")[1]) == []

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    except BaseException:
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        kill_group(serve.pid)
        serve.wait(timeout=30)
    assert "Traceback" not in log.read_text(errors="replace")


def test_work_pool_schedules_run_on_the_worker_of_infra_worker_sh(
        kgrag_env: Path, api: str, tmp_path: Path) -> None:
    """The scale-out path: a process worker started by infra/worker.sh runs the schedule's
    runs (flow loaded by its module path, as on a worker machine with kgrag installed)."""
    pool = "kgrag-test-pool"
    proc = subprocess.run([KGRAG, "schedule", "add", "--source", str(tmp_path), "--interval",
                           "5", "--pool", pool], env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and f"infra/worker.sh {pool}" in proc.stderr  # no pool yet
    pooled = tmp_path / "pooled"
    pooled.mkdir()
    (pooled / "danube.txt").write_text(CORPUS["danube.txt"])

    log = tmp_path / "worker.log"
    script = Path(__file__).resolve().parents[2] / "infra" / "worker.sh"
    with open(log, "wb") as fh:
        worker = subprocess.Popen([str(script), pool],
                                  env={**os.environ, "PREFECT_API_URL": api}, stdout=fh,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _pool_limit(pool) == 1, 120, "worker.sh to create the pool")
        code, out = kgrag("schedule", "add", "--source", str(pooled), "--interval", "5",
                          "--no-extract", "--name", "pooled", "--pool", pool)
        assert code == 0 and f"pool '{pool}'" in out
        t = time.perf_counter()
        wait_for(lambda: _ingested("danube.txt"), 150, "a worker run of the pool schedule")
        print(f"pool schedule ingested by the worker after {time.perf_counter() - t:.1f}s")
        assert kgrag("schedule", "remove", "pooled")[0] == 0
    except BaseException:
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        kill_group(worker.pid)
        worker.wait(timeout=30)


# --------------------------------------------------------------------------- helpers


def _ingested(name: str) -> bool:
    c = Components.from_settings(get_settings())
    try:
        rows = c.graph.read_query("MATCH (d:Document) RETURN d.source AS source",
                                  limit=1000).rows
    finally:
        c.close()
    return any(Path(str(r["source"])).name == name for r in rows)


@contextlib.contextmanager
def _prefect_client() -> Iterator[SyncPrefectClient]:
    """A client on the test's server (the test process itself has no PREFECT_API_URL)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = os.environ["KGRAG_PREFECT_API_URL"]
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        yield client


def _pool_limit(pool: str) -> int | None:
    from prefect.exceptions import ObjectNotFound

    with _prefect_client() as client:
        try:
            return client.read_work_pool(pool).concurrency_limit
        except ObjectNotFound:
            return None


def _deployment_id(name: str) -> Any:
    with _prefect_client() as client:
        return client.read_deployment_by_name(f"ingest_corpus/{name}").id


def _runs(deployment_id: Any, *state_types: str) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with _prefect_client() as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType(t) for t in state_types])),
        ))
