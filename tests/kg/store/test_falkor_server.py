"""The embedded FalkorDB server: start, find again, persist, stop, and fail helpfully."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ServiceError
from core.models import Entity
from kg.store import EmbeddedFalkorServer, FalkorGraphStore
from kg.store.falkor_server import _is_server_process
from tests.kg.store.conftest import isolated_settings

pytestmark = pytest.mark.services


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedFalkorServer]:
    srv = EmbeddedFalkorServer(isolated_settings(tmp_path / "kg"))
    try:
        yield srv
    finally:
        srv.stop()


def test_start_status_stop(server: EmbeddedFalkorServer) -> None:
    assert not server.status().running
    started = server.start()
    assert started.running and started.pid and started.port
    assert started.uptime_s is not None and started.uptime_s >= 0
    state = json.loads(server.state_file.read_text())
    assert (state["pid"], state["port"]) == (started.pid, started.port)

    again = server.start()  # already running: reused, not a second server
    assert (again.pid, again.port) == (started.pid, started.port)
    assert server.status().running

    assert server.stop() is True
    assert not server.status().running
    assert not _is_server_process(started.pid)
    assert not server.state_file.exists()
    assert server.stop() is False


def test_data_survives_restart(server: EmbeddedFalkorServer) -> None:
    first = server.start()
    assert first.port is not None
    store = FalkorGraphStore(first.host, first.port, graph_name="kept")
    store.upsert_entities([Entity(id="e1", name="Kept across restarts")])
    store.close()
    server.stop()

    second = server.start()
    assert second.pid != first.pid
    assert second.port is not None
    store = FalkorGraphStore(second.host, second.port, graph_name="kept")
    assert [e.name for e in store.get_entities(["e1"])] == ["Kept across restarts"]
    store.close()
    assert (server.data_dir / "appendonlydir").is_dir()


def test_port_in_use_is_a_service_error_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = isolated_settings(tmp_path / "kg", falkor_port=port)
        with pytest.raises(ServiceError, match=f"port {port}") as err:
            EmbeddedFalkorServer(settings).start()
    assert "KGRAG_FALKOR_PORT=0" in err.value.hint


def test_a_server_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "kg")
    aof = settings.data_dir / "falkordb" / "appendonlydir"
    aof.mkdir(parents=True)
    (aof / "appendonly.aof.manifest").write_text("this is not a manifest\n")
    server = EmbeddedFalkorServer(settings)
    with pytest.raises(ServiceError, match="exited at start") as err:
        server.start()
    assert "manifest" in err.value.message.lower()  # the log tail says what broke
    assert str(server.log_file) in err.value.hint
    assert not server.state_file.exists()


def test_stale_state_file_is_replaced(server: EmbeddedFalkorServer) -> None:
    server.run_dir.mkdir(parents=True)
    server.state_file.write_text(json.dumps({"pid": 2**22 + 7, "port": 1, "started_at": 0}))
    assert not server.status().running
    assert server.start().running
