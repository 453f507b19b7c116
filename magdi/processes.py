"""Child processes that the project starts (servers, workers): free ports, and stopping by pid.

Tests, benchmarks and the demo must stop every process they start, also when they fail; one
function does it the same way everywhere: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from typing import Any

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; a small race with other binders remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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
