"""One writer per data dir: the lock between processes, and what a second writer is told."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.settings import load_settings
from core.writer_lock import WriterBusyError, writer_lock

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from core.settings import load_settings
from core.writer_lock import writer_lock
with writer_lock(load_settings(data_dir=sys.argv[1]), "ingest"):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_in_another_process(data: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_told_who_writes_and_gets_the_lock_once_that_one_dies(
        tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(WriterBusyError) as busy, writer_lock(settings, wait_s=0):
            pytest.fail("got the lock while another process held it")
        assert f"an ingest is running (pid {holder.pid}, since " in busy.value.message
        assert "--wait" in busy.value.hint

        t = time.monotonic()
        with pytest.raises(WriterBusyError), writer_lock(settings, wait_s=1.0):
            pass
        assert time.monotonic() - t >= 1.0

        got = threading.Event()

        def wait_for_it() -> None:
            with writer_lock(settings, "delete"):  # waits as long as it takes
                got.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not got.wait(1.5)
        holder.kill()  # kill -9: the kernel releases the lock, nothing to clean up
        assert got.wait(15)
        waiter.join(5)
    finally:
        holder.kill()
        holder.wait(10)


def test_a_nested_hold_is_free_and_another_thread_is_refused_at_once(
        tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            with writer_lock(settings, "delete"):  # would wait forever on itself
                pass
        except BaseException as exc:
            errors.append(exc)

    with writer_lock(settings, "ingest", wait_s=0), writer_lock(settings, "ingest", wait_s=0):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join(10)
    assert not t.is_alive()
    (error,) = errors
    assert isinstance(error, WriterBusyError)
    assert f"an ingest is running (pid {os.getpid()}, since " in str(error)
    with writer_lock(settings, wait_s=0):  # released on leaving the block
        pass
