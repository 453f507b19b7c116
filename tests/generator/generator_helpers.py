"""Helpers for the generator tests (imported by name: pyproject's pytest `pythonpath` lists this folder).

Every process started here is stopped by its pid (SIGTERM, then SIGKILL), also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from magdi.procs import stop_process

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MAGDI = str(Path(sys.executable).with_name("magdi"))
RECORDED = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
THREE = [("verifier-175b", "175b_verification", "chatgpt"), ("finetuned-175b", "175b_finetuning", "claude"),
         ("verifier-6b", "6b_verification", "bard")]


stop_pid = stop_process  # SIGTERM by pid, SIGKILL after the grace period


class Panel:
    """A running simulated panel subprocess: base URL, stats, and its pid."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.http = httpx.Client(timeout=5.0)

    def stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.base_url}/_sim/stats").json()

    def reset(self) -> None:
        self.http.post(f"{self.base_url}/_sim/reset")


def endpoint_defaults(base_url: str, **overrides: Any) -> dict[str, Any]:
    """The simulated panel as an endpoint with fast retries (tests must not sleep for long)."""
    base: dict[str, Any] = {
        "base_url": base_url, "api_key_env": None, "max_tokens": 2048, "timeout_s": 5.0, "max_retries": 6,
        "backoff": {"initial_s": 0.05, "max_s": 0.4},
        "breaker": {"failure_threshold": 8, "cooldown_s": 0.2, "max_cooldown_s": 1.0, "down_after_s": 30.0},
        "limits": {"max_in_flight": 32},
        "price": {"input_per_1k": 0.001, "output_per_1k": 0.002},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


def panel_dict(base_url: str, agents: list[tuple[str, str, str]] = THREE, **defaults: Any) -> dict[str, Any]:
    """A panel config for the simulated panel (inline endpoint, as in a `magdi generate` panel file)."""
    return {"name": "test", "defaults": endpoint_defaults(base_url, **defaults),
            "agents": [{"name": n, "model": m, "demos": d} for n, m, d in agents]}


def operator_env(base_url: str, name: str = "sim", **overrides: Any) -> dict[str, str]:
    """The operator's configuration of a worker in the tests: the simulated panel declared as an endpoint
    (same settings as `panel_dict`, so inline test panels match it), its loopback host allow-listed, and
    the repository's data/ as the data root."""
    endpoint = {"name": name, "models": sorted({m for _, m, _ in THREE} | set(RECORDED)),
                **endpoint_defaults(base_url, **overrides)}
    return {"MAGDI_ENDPOINTS": json.dumps([endpoint]), "MAGDI_EGRESS_ALLOW": "127.0.0.1",
            "MAGDI_DATA_ROOT": str(REPO / "data")}


def write_panel(path: Path, base_url: str, **kwargs: Any) -> Path:
    path.write_text(yaml.safe_dump(panel_dict(base_url, **kwargs)))
    return path


def neo4j_subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ (already pointed at the test Neo4j by `neo4j_env`) plus fast lease settings."""
    env = dict(os.environ)
    env.update({"MAGDI_GENERATOR_LEASE_S": "5", "MAGDI_GENERATOR_RENEW_EVERY_S": "1",
                "MAGDI_GENERATOR_LEASE_MARGIN_S": "1", "MAGDI_GENERATOR_COUNTERS_EVERY_S": "1",
                "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess whose output goes to `log`; stopped by pid on exit, also on failure."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        yield proc
    finally:
        stop_pid(proc)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def count_responses(driver: Any, job_id: str) -> int:
    records, _, _ = driver.execute_query(
        "MATCH (d:Debate {job_id: $job})-[:HAS_RESPONSE]->(r:Response) RETURN count(r) AS n", job=job_id)
    return int(records[0]["n"])
