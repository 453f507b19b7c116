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

from magdi.processes import stop_process

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


def mag_view(debate: Any) -> dict[str, Any]:
    """What two runs of one job on the same panel must agree on, whatever the mode (sync or batch): the
    question, every node's prompt, text, parse, answer and label, the INFORMS edges and the outcome.
    Not compared: ids (they name the job), latency, attempts and cost (a batch costs its own price)."""
    from magdi.mag import canonical

    d = canonical(debate)
    return {
        "question": d.question.id, "qid": d.question.qid, "status": d.status.value, "team_answer": d.team_answer,
        "team_correct": d.team_correct, "majority": d.majority_answer, "consensus": d.consensus,
        "rounds_used": d.rounds_used, "error": d.error,
        "nodes": [(r.agent, r.round, r.parse_status.value, r.raw_text, r.reasoning, r.answer, r.confidence,
                   r.recalibrated_confidence, r.correct, r.label, r.parse_error, r.model, r.prompt_hash,
                   [(m.role, m.content) for m in r.prompt or []], r.tokens_in, r.tokens_out, r.finish_reason,
                   [(o.text, o.reask, o.tokens_in, o.tokens_out) for o in r.outputs]) for r in d.responses],
        "edges": [(e.source_agent, e.source_round, e.target_agent, e.target_round) for e in d.edges],
    }


def job_mags(store: Any, job_id: str) -> dict[str, dict[str, Any]]:
    """mag_view of every debate of a job, by the question's record id."""
    from magdi.store.graph_store import DebateFilter

    out = {}
    for debate_id in store.debate_ids(DebateFilter(job_id=job_id)):
        debate = store.get_debate(debate_id)
        out[debate.question.qid] = mag_view(debate)
    return out


def panel_batch_lines(base_url: str) -> dict[str, list[str]]:
    """Every batch the simulated panel holds -> the custom_ids of its input file (paged like the SDK)."""
    out: dict[str, list[str]] = {}
    with httpx.Client(timeout=10.0) as http:
        after = None
        while True:
            page = http.get(f"{base_url}/batches", params={"limit": 100, **({"after": after} if after else {})}).json()
            for batch in page["data"]:
                text = http.get(f"{base_url}/files/{batch['input_file_id']}/content").text
                out[batch["id"]] = [json.loads(line)["custom_id"] for line in text.splitlines() if line.strip()]
            if not page["has_more"]:
                return out
            after = page["last_id"]
