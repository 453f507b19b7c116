"""Child processes that the project starts (servers, workers): free ports, readiness, stopping by pid.

Tests, benchmarks and the demo must stop every process they start, also when they fail; one
function does it the same way everywhere: SIGTERM, a grace period, then SIGKILL. One function
waits for a started server to answer, so that every caller notices a child that died instead of
polling a dead port until its timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; a small race with other binders remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NotReady(RuntimeError):
    """A started server exited, or did not answer within its startup timeout. The caller still owns
    the process: it stops it (`stop_process`) and adds what it knows (its log) to the message."""


def wait_until_ready(proc: subprocess.Popen[Any], url: str, *, timeout_s: float, every_s: float = 0.2,
                     probe_timeout_s: float = 2.0) -> None:
    """Poll `url` until it answers 200; raise `NotReady` once `proc` has exited or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise NotReady(f"exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=probe_timeout_s).status_code == 200:
                return
        if time.monotonic() >= deadline:
            raise NotReady(f"not ready after {timeout_s:.0f} s")
        time.sleep(every_s)


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 5.0, *, group: bool = False) -> None:
    """SIGTERM `proc` (its whole process group with `group=True`), SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, grace_s)
        send(signal.SIGKILL)
        proc.wait(timeout=30)  # SIGKILL cannot be ignored; only a loaded machine makes this slow
