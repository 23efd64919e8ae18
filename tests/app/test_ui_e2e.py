"""End to end in a real browser: the Streamlit app on a loopback port, driven by Debian's
chromium through Playwright. Screenshots of each page go to test-output/ui/.

The corpus is ingested with the scripted extractor (a stand-in for the LLM, so the graph
is known); the question is answered by the app with the real local model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flows.ingest import ingest_corpus
from tests.conftest import LOCAL_MODEL, REPO
from tests.corpus import write_corpus
from tests.processes import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO / "test-output" / "ui"

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="chromium missing: `make test` installs it (apt-get install "
                       "chromium chromium-driver)"),
]


@pytest.fixture
def app_url(kgrag_env: Path, tmp_path: Path, scripted_llm: object) -> Iterator[str]:
    ingest_corpus([str(write_corpus(tmp_path / "corpus"))], extract=True)
    port = free_port()
    env = dict(os.environ, KGRAG_QA_MODE="auto")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "ui.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--client.showErrorDetails", "false"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError("streamlit did not come up")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def page(app_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        try:
            yield pg
        finally:
            browser.close()


def test_cypher_console_and_explorer_in_the_browser(page: object, app_url: str) -> None:
    pg = page  # playwright Page
    pg.goto(app_url + "/cypher")  # type: ignore[attr-defined]
    pg.get_by_label("Query").fill(  # type: ignore[attr-defined]
        "MATCH (d:Document) RETURN d.title AS title ORDER BY title")
    pg.get_by_role("button", name="Run").click()  # type: ignore[attr-defined]
    pg.wait_for_selector("text=3 rows")  # type: ignore[attr-defined]
    time.sleep(2)
    pg.screenshot(path=str(SHOTS / "cypher.png"), full_page=True)  # type: ignore[attr-defined]

    pg.get_by_label("Query").fill("MATCH (d:Document) DETACH DELETE d")  # type: ignore
    pg.get_by_role("button", name="Run").click()  # type: ignore[attr-defined]
    pg.wait_for_selector("text=read-only")  # type: ignore[attr-defined]

    pg.goto(app_url + "/explore")  # type: ignore[attr-defined]
    pg.get_by_label("Find an entity").fill("Danube")  # type: ignore[attr-defined]
    pg.keyboard.press("Enter")  # type: ignore[attr-defined]
    pg.wait_for_selector("text=Move along an edge")  # type: ignore[attr-defined]
    pg.get_by_role("button", name="Vienna").first.click()  # type: ignore[attr-defined]
    pg.wait_for_selector("h3:has-text('Vienna')")  # type: ignore[attr-defined]
    time.sleep(3)
    pg.screenshot(path=str(SHOTS / "explore.png"), full_page=True)  # type: ignore

    for name in ("ingest", "evaluation"):
        pg.goto(f"{app_url}/{name}")  # type: ignore[attr-defined]
        pg.wait_for_selector("h1")  # type: ignore[attr-defined]
        time.sleep(3)
        assert "Traceback" not in pg.content()  # type: ignore[attr-defined]
        pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore


@pytest.mark.llm
@pytest.mark.skipif(not LOCAL_MODEL.exists(), reason="local model not assembled (make setup)")
def test_ask_shows_answer_with_citations(page: object, app_url: str) -> None:
    pg = page
    pg.goto(app_url + "/")  # type: ignore[attr-defined]  (Ask is the default page)
    pg.get_by_label("Question").fill("Where was Albert Einstein born?")  # type: ignore
    pg.get_by_role("button", name="Ask").click()  # type: ignore[attr-defined]
    # The draft streams in while the model writes, then gives way to the checked answer.
    pg.wait_for_selector("text=Draft: the model is writing", timeout=300_000)  # type: ignore
    pg.wait_for_selector("text=LLM calls", timeout=420_000)  # type: ignore[attr-defined]
    assert "Draft: the model is writing" not in pg.inner_text("body")  # type: ignore
    pg.wait_for_selector("text=Evidence")  # type: ignore[attr-defined]
    time.sleep(3)
    text = pg.inner_text("body")  # type: ignore[attr-defined]
    assert "[1]" in text  # an inline citation
    assert any(b in text for b in ("supported", "unsupported", "unverified"))
    assert "Traceback" not in text
    pg.screenshot(path=str(SHOTS / "ask.png"), full_page=True)  # type: ignore[attr-defined]
