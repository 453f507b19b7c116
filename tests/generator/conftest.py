"""Fixtures for the generator tests: the real simulated panel over HTTP, panel files, subprocesses.

Every process started here is stopped by its pid (SIGTERM, then SIGKILL) in a `finally`, also
when the test fails. The quota window of the simulated panel is 60 s, which makes a 429 cost a
minute; `short_window_panel.py` runs the same server with a shorter window so tests can meet
real 429 + Retry-After answers in seconds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from generator_helpers import HERE, REPO, Panel, stop_pid

from magdi.processes import NotReady, wait_until_ready


@pytest.fixture(scope="session")
def gsm8k(public_data: Callable[..., Path]) -> dict[str, Path]:
    return {"test": public_data("gsm8k", "test.jsonl"), "solutions": public_data("gsm8k", "model_solutions.jsonl"),
            "convincing": public_data("convincing")}


@pytest.fixture
def start_panel(gsm8k: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., Panel]]:
    """start_panel(window_s=None, **PanelSimConfig knobs) -> Panel; all stopped at teardown."""
    from services.teachers.config import PanelSimConfig
    from services.teachers.runner import free_port

    started: list[Panel] = []

    def start(window_s: float | None = None, **knobs: Any) -> Panel:
        config = PanelSimConfig(solutions_path=gsm8k["solutions"], questions_path=gsm8k["test"], **knobs)
        cfg_path = tmp_path / f"panel-{len(started)}.json"
        cfg_path.write_text(config.model_dump_json())
        port = free_port()
        log = tmp_path / f"panel-{len(started)}.log"
        cmd = [sys.executable, str(HERE / "short_window_panel.py"), "--window", str(window_s or 60.0),
               "--config", str(cfg_path), "--port", str(port), "--log-level", "warning"]
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        panel = Panel(proc, port, log)
        started.append(panel)
        try:  # stopped at teardown either way: it is in `started`
            wait_until_ready(proc, f"{panel.base_url}/models", timeout_s=60, every_s=0.1)
        except NotReady as exc:
            raise RuntimeError(f"panel {exc}: {log.read_text()[-2000:]}") from None
        return panel

    try:
        yield start
    finally:
        for panel in started:
            panel.http.close()
            stop_pid(panel.proc)


