"""Waiting for a started server: it answers, it dies, or it hangs; the caller always learns which."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from magdi.processes import NotReady, free_port, stop_process, wait_until_ready


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_server_that_answers_is_ready() -> None:
    port = free_port()
    proc = start("-m", "http.server", str(port), "--bind", "127.0.0.1")
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}/", timeout_s=30)
        assert proc.poll() is None
    finally:
        stop_process(proc)


def test_a_server_that_dies_is_reported_at_once_with_its_exit_code() -> None:
    proc = start("-c", "import sys; sys.exit(3)")
    t0 = time.monotonic()
    with pytest.raises(NotReady, match="exited with code 3"):
        wait_until_ready(proc, f"http://127.0.0.1:{free_port()}/", timeout_s=60)
    assert time.monotonic() - t0 < 30  # not after polling a dead port for the whole timeout


def test_a_server_that_never_answers_times_out_and_is_left_to_its_caller() -> None:
    proc = start("-c", "import time; time.sleep(60)")
    try:
        with pytest.raises(NotReady, match="not ready after 1 s"):
            wait_until_ready(proc, f"http://127.0.0.1:{free_port()}/", timeout_s=1, every_s=0.1)
        assert proc.poll() is None  # the caller owns it and stops it
    finally:
        stop_process(proc)
    assert proc.poll() is not None
