"""Real local teachers: HF's own OpenAI-compatible server (`transformers serve`), started and
stopped by pid. No server of our own: this only launches it where packaged models resolve.

    magdi models serve --port 8902            # foreground; Ctrl-C stops it
    magdi models serve --port 8902 --detach   # background; the pid goes to a pid file
    magdi models stop                         # SIGTERM (then SIGKILL) by that pid

`transformers serve` loads the model named in each request (`model` of the chat completion) on
first use. It runs with the models cache as its working directory, so a packaged-model name
(`smollm2-135m-instruct`) is a local directory there; an absolute local path works too. A
panel (configs/panels/local-hf.yaml) then names its agents' models exactly as users name them
everywhere else. Needs the `transformers serve` extras (fastapi, uvicorn), which the generator
and api extras install.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from magdi import models
from magdi.errors import UserError
from magdi.processes import NotReady, free_port, stop_process, wait_until_ready

log = logging.getLogger(__name__)


class ModelServerError(UserError, RuntimeError):
    """The server did not start (the message carries the tail of its log)."""


def _transformers_cli() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "transformers.cli.transformers"]


class ModelServer:
    """One `transformers serve` process on 127.0.0.1; a context manager that always stops it by pid."""

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1", log_file: Path | None = None,
                 cache_dir: Path | None = None, startup_timeout_s: float = 180.0, seed: int | None = 0) -> None:
        self.host, self.port = host, port or free_port(host)
        self.cwd = models.models_dir(cache_dir)
        self.log_file = log_file or self.cwd / f"serve-{self.port}.log"
        self.startup_timeout_s = startup_timeout_s
        self.seed = seed
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        cmd = [*_transformers_cli(), "serve", "--host", self.host, "--port", str(self.port), "--device", "cpu",
               "--log-level", "warning"]
        return cmd + (["--default-seed", str(self.seed)] if self.seed is not None else [])

    def start(self) -> ModelServer:
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_until_ready(self.proc, f"http://{self.host}:{self.port}/health", timeout_s=self.startup_timeout_s,
                             every_s=0.5)
        except NotReady as exc:
            self.stop()
            raise ModelServerError(f"transformers serve {exc}:\n{self._tail()}") from None
        log.info("transformers serve on %s (pid %d, log %s)", self.base_url, self.proc.pid, self.log_file)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10.0, group=True)

    def _tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- a detached server, remembered by its pid file ---------------------------------------------------------
def pid_file(cache_dir: Path | None = None) -> Path:
    return models.models_dir(cache_dir) / "serve.json"


def start_detached(port: int, cache_dir: Path | None = None) -> dict[str, object]:
    """Start a server that outlives this process; its pid, port and log go to `pid_file()`."""
    current = running(cache_dir)
    if current is not None:
        raise ModelServerError(f"a model server is already running (pid {current['pid']}, {current['base_url']}); "
                               "`magdi models stop` first")
    server = ModelServer(port, cache_dir=cache_dir).start()
    info = {"pid": server.pid, "port": server.port, "base_url": server.base_url, "log": str(server.log_file)}
    pid_file(cache_dir).write_text(json.dumps(info))
    return info


def running(cache_dir: Path | None = None) -> dict[str, object] | None:
    """The detached server's record if its pid is alive, else None (a stale file is removed)."""
    path = pid_file(cache_dir)
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ProcessLookupError, ValueError):
        path.unlink(missing_ok=True)
        return None
    return info


def stop_detached(cache_dir: Path | None = None, grace_s: float = 10.0) -> int | None:
    """SIGTERM the detached server's process group by its recorded pid, SIGKILL after `grace_s`."""
    info = running(cache_dir)
    if info is None:
        return None
    pid = int(info["pid"])
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            continue
        break
    pid_file(cache_dir).unlink(missing_ok=True)
    return pid
