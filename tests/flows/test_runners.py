"""Task runners: the Dask path (prefect-dask, a real LocalCluster of worker processes) builds
the same graph and indexes as the default runner, and never has more extraction calls in
flight than `extract_concurrency`.

The LLM is an OpenAI-compatible HTTP server on 127.0.0.1 answering with the scripted
extractor of tests/corpus.py (a stand-in: the Dask workers are separate processes, so the
in-process scripted model cannot reach them; an HTTP server can, like vLLM would).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.llm.base import CompletionRequest
from core.settings import get_settings, load_settings
from flows.ingest import ingest_corpus
from flows.runners import TaskRunnerFromSettings, make_task_runner
from tests.corpus import CORPUS, scripted_extraction, write_corpus
from tests.flows.test_ingest_flow import snapshot

#: Seconds each fake completion takes, so that overlapping requests really overlap.
LATENCY_S = 0.4

MORE_DOCS = {
    "nile.txt": "The Nile is a river in Africa. The Nile flows through Egypt and Sudan "
                "before it reaches the Mediterranean Sea near Alexandria.",
    "tesla.txt": "Nikola Tesla was an engineer born in Smiljan. He worked for Thomas Edison "
                 "in New York before he founded his own laboratory in Colorado.",
    "lovelace.md": "# Ada Lovelace\n\nAda Lovelace was a mathematician born in London. She "
                   "wrote notes on the Analytical Engine designed by Charles Babbage.",
    "amazon.txt": "The Amazon is a river in South America. The Amazon crosses Peru and "
                  "Brazil and ends in the Atlantic Ocean near Macapa.",
}


@dataclass
class FakeLLMServer:
    """An OpenAI-compatible chat endpoint; counts requests and the most in flight."""

    url: str = ""
    requests: int = 0
    in_flight: int = 0
    peak: int = 0

    def reset(self) -> None:
        self.requests = self.in_flight = self.peak = 0


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    state = FakeLLMServer()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.requests += 1
                state.in_flight += 1
                state.peak = max(state.peak, state.in_flight)
            try:
                time.sleep(LATENCY_S)
                content = scripted_extraction(CompletionRequest.of(body["messages"]))
            finally:
                with lock:
                    state.in_flight -= 1
            data = json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50,
                          "total_tokens": 150},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_settings_choose_the_task_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    assert isinstance(make_task_runner(load_settings()), ThreadPoolTaskRunner)
    remote = make_task_runner(load_settings(task_runner="dask", dask_address="tcp://h:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://h:8786"
    # The flow's runner is chosen when a run starts, from the settings of that moment.
    monkeypatch.setenv("KGRAG_TASK_RUNNER", "dask")
    monkeypatch.setenv("KGRAG_DASK_ADDRESS", "tcp://h:8786")
    get_settings.cache_clear()
    assert isinstance(TaskRunnerFromSettings().duplicate(), DaskTaskRunner)
    monkeypatch.setenv("KGRAG_TASK_RUNNER", "default")
    get_settings.cache_clear()
    assert isinstance(TaskRunnerFromSettings().duplicate(), ThreadPoolTaskRunner)


def _ingest_into_fresh_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path,
                             label: str, **env: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest with extraction into a new data dir and graph; (summary, snapshot)."""
    monkeypatch.setenv("KGRAG_DATA_DIR", str(tmp_path / f"data-{label}"))
    monkeypatch.setenv("KGRAG_GRAPH_NAME", f"t_runner_{label}_{time.time_ns()}")
    for key, value in env.items():
        monkeypatch.setenv(f"KGRAG_{key.upper()}", value)
    get_settings.cache_clear()
    summary = ingest_corpus([str(corpus)], extract=True)
    return summary, snapshot()


@pytest.mark.services
def test_dask_local_cluster_builds_the_same_graph_and_index_within_the_llm_limit(
        kgrag_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        llm_server: FakeLLMServer) -> None:
    corpus = write_corpus(tmp_path / "corpus", {**CORPUS, **MORE_DOCS})
    monkeypatch.setenv("KGRAG_LLM_BACKEND", "openai")
    monkeypatch.setenv("KGRAG_LLM_BASE_URL", llm_server.url)
    monkeypatch.setenv("KGRAG_LLM_MODEL", "served-extractor")

    default, expected = _ingest_into_fresh_graph(tmp_path, monkeypatch, corpus, "default")
    assert default["chunks"] == len(CORPUS) + len(MORE_DOCS) == llm_server.requests
    assert default["relations_kept"] > 0 and default["failed_chunks"] == []

    # As inside Streamlit (the UI's Ingest page, AppTest): `__main__` is a page script that
    # a spawned worker process would re-run. Workers must still start.
    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('a worker process ran the page script')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)

    for limit in (2, 1):
        llm_server.reset()
        t = time.perf_counter()
        s, got = _ingest_into_fresh_graph(
            tmp_path, monkeypatch, corpus, f"dask{limit}", task_runner="dask",
            dask_workers="2", extract_concurrency=str(limit))
        seconds = time.perf_counter() - t
        assert got == expected, f"dask (limit {limit}) built another graph or index"
        assert llm_server.requests == s["chunks"] == default["chunks"]
        # Two workers, each one call at a time: the limit decides how many overlap.
        assert llm_server.peak == limit, (limit, llm_server.peak)
        # The workers' LLM use reaches the run summary.
        assert s["llm"]["calls"] == s["chunks"] and s["llm"]["prompt_tokens"] == 100 * s[
            "chunks"]
        print(f"dask, 2 workers, extract_concurrency={limit}: {seconds:.1f}s")
