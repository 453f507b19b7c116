"""Run the simulated panel in a subprocess for tests, benchmarks and the demo.

A subprocess rather than a thread: the generator under test then meets a real socket, real
timeouts and real connection drops, and a wedged server can always be killed. The process is
stopped by its pid (SIGTERM, then SIGKILL after a grace period) on context exit, including
when the body raised, and by an atexit hook as a last resort.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from magdi.processes import NotReady, free_port, stop_process, wait_until_ready
from services.teachers.config import PanelSimConfig

logger = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `services/`
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    stop_process(proc, grace_s)
    _LIVE.pop(proc.pid, None)


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE.values()):
        _stop(proc, 2.0)


class TeacherPanelServer:
    """Context manager: ``with TeacherPanelServer(config) as panel: OpenAI(base_url=panel.base_url)``."""

    def __init__(
        self,
        config: PanelSimConfig,
        *,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 30.0,
        grace_s: float = 5.0,
        log_level: str = "warning",
    ) -> None:
        self.config = config
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.log_level = log_level
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> TeacherPanelServer:
        """Start the subprocess and wait until it answers; a no-op if it is already running."""
        if self._proc is not None and self._proc.poll() is None:
            return self
        self._tmpdir = tempfile.TemporaryDirectory(prefix="magdi-panel-")
        config_path = Path(self._tmpdir.name) / "panel.json"
        config_path.write_text(self.config.model_dump_json(), encoding="utf-8")
        self.log_path = Path(self._tmpdir.name) / "panel.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        last_error = "not started"
        for _ in range(3):  # a port can be taken between free_port() and bind
            self.port = free_port(self.host)
            cmd = self.command(config_path)
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            _LIVE[self._proc.pid] = self._proc
            try:
                self._wait_ready()
                logger.info("teacher panel (simulated) pid %d at %s", self._proc.pid, self.base_url)
                return self
            except RuntimeError as exc:
                last_error = str(exc)
                _stop(self._proc, self.grace_s)
        self._cleanup_tmp()
        raise RuntimeError(f"simulated teacher panel did not start: {last_error}")

    def command(self, config_path: Path) -> list[str]:
        """The child's argv (a hook: tests substitute a stub server to exercise the stop path)."""
        return [
            sys.executable,
            "-m",
            "services.teachers",
            "--config",
            str(config_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            self.log_level,
        ]

    def _wait_ready(self) -> None:
        assert self._proc is not None
        try:
            wait_until_ready(self._proc, f"{self.base_url}/models", timeout_s=self.startup_timeout_s, every_s=0.05,
                             probe_timeout_s=1.0)
        except NotReady as exc:
            raise NotReady(f"{exc}: {self.log_tail()}") from None

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def stop(self) -> None:
        if self._proc is not None:
            _stop(self._proc, self.grace_s)
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> TeacherPanelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            logger.warning(
                "teacher panel log tail (pid %s):\n%s", self._proc and self._proc.pid, self.log_tail()
            )
        self.stop()
