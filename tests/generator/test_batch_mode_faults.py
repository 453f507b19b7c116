"""Batch mode against the simulated panel's Batch API: split rounds, cancelled and expired batches.

- A round larger than the endpoint's `batch_limits` goes out as several batches (the panel fails
  the validation of a larger one), with the same MAGs as the synchronous path.
- A batch cancelled by someone else (the provider's dashboard) keeps its answered lines; the rest
  go out in the next batch, and the MAGs are still those of the synchronous path.
- Batches that keep expiring: a line is sent again up to the endpoint's `max_retries`, then its
  turn is stored ABSENT with the reason, like a synchronous call that gave up.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest
from generator_helpers import (
    MAGDI,
    job_mags,
    neo4j_subprocess_env,
    panel_batch_lines,
    running,
    wait_for,
    write_panel,
)

from magdi.mag import ParseStatus
from magdi.store.batches import BatchStore
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore

BATCH_ENV = {"MAGDI_GENERATOR_BATCH_POLL_S": "0.2", "MAGDI_GENERATOR_BATCH_POLL_MAX_S": "0.4"}


def generate(panel_file: Path, gsm8k: dict[str, Path], job: str, n: int, offset: int, *extra: str) -> list[str]:
    return [MAGDI, "generate", "--panel", str(panel_file), "--dataset", "gsm8k", "--data", str(gsm8k["test"]),
            "--limit", str(n), "--offset", str(offset), "--convincing", str(gsm8k["convincing"]), "--no-progress",
            "--job", job, *extra]


def run_ok(cmd: list[str], log: Path, env: dict[str, str]) -> None:
    with running(cmd, env, log) as proc:
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]


def test_rounds_split_at_the_batch_limit_and_a_cancelled_batch_end_with_the_sync_mags(
        store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    n, limit = 5, 2  # 5 turns per model and round: batches of 2, 2 and 1
    panel = start_panel(batch_completion_s=3.0, batch_max_requests=limit)
    half = {"batch_input_per_1k": 0.0005, "batch_output_per_1k": 0.001}  # the Batch API at half price
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url, batch_limits={"max_requests": limit},
                             price=half)
    env = neo4j_subprocess_env(**BATCH_ENV)
    run_ok(generate(panel_file, gsm8k, "sync-split", n, 500), tmp_path / "sync.log", env)
    panel.reset()

    log = tmp_path / "batch.log"
    with running(generate(panel_file, gsm8k, "split", n, 500, "--mode", "batch"), env, log) as proc:
        wait_for(lambda: any(b["batch_id"] for b in BatchStore(store).summaries("job-split")) or proc.poll() is not None,
                 60, "a batch")
        victim = next(b["batch_id"] for b in BatchStore(store).summaries("job-split") if b["batch_id"])
        cancelled = httpx.post(f"{panel.base_url}/batches/{victim}/cancel", timeout=5.0)
        assert cancelled.status_code == 200, cancelled.text
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]

    recorded = BatchStore(store).summaries("job-split")
    assert max(b["total"] for b in recorded) <= limit  # the panel refuses larger batches: each was split
    assert next(b for b in recorded if b["batch_id"] == victim)["status"] == "cancelled"
    assert all(b["ingested"] for b in recorded)
    lines = Counter(cid for ids in panel_batch_lines(panel.base_url).values() for cid in ids)
    assert max(lines.values()) == 1  # no line sent twice; a cancelled line goes again as its next attempt
    assert any(not cid.endswith(".1") for cid in lines), "the cancelled batch's unanswered lines went out again"
    assert job_mags(store, "job-split") == job_mags(store, "job-sync-split")
    jobs = JobStore(store)
    sync, batch = jobs.get("job-sync-split"), jobs.get("job-split")
    assert sync is not None and batch is not None and sync.cost_usd > 0
    assert (batch.tokens_in, batch.tokens_out) == (sync.tokens_in, sync.tokens_out)
    assert batch.cost_usd == pytest.approx(sync.cost_usd / 2)  # every turn at the endpoint's batch price


def test_lines_of_batches_that_keep_expiring_are_stored_absent_after_the_retry_limit(
        store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    n = 3
    # a batch answers its lines evenly over 2 s and expires after 1.2 s: its last lines never come
    panel = start_panel(batch_completion_s=2.0, batch_expiry_s=1.2)
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url, max_retries=1)
    run_ok(generate(panel_file, gsm8k, "expiring", n, 540, "--mode", "batch", "--max-rounds", "1"),
           tmp_path / "batch.log", neo4j_subprocess_env(**BATCH_ENV))

    recorded = BatchStore(store).summaries("job-expiring")
    assert {b["status"] for b in recorded} == {"expired"} and all(b["ingested"] for b in recorded)
    absent = []
    for debate_id in store.debate_ids(DebateFilter(job_id="job-expiring")):
        for r in store.get_debate(debate_id).responses:
            if r.parse_status is ParseStatus.ABSENT:
                absent.append(r)
    assert absent, "a single-line batch always expires: some turns must give up"
    for r in absent:
        assert "batch_expired" in (r.parse_error or "") and "gave up after 2 batch attempts" in r.parse_error, r
    lines = Counter(cid.rpartition(".")[0] for ids in panel_batch_lines(panel.base_url).values() for cid in ids)
    assert max(lines.values()) == 2  # first try + max_retries (1), never more
    shown = subprocess.run([MAGDI, "jobs", "status", "expiring", "--format", "json"], env=neo4j_subprocess_env(),
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["status"] == "complete" and status["retries"] > 0 and status["call_failures"] == len(absent)
    assert [b["batch_id"] for b in status["batches"]] == [b["batch_id"] for b in recorded]
    table = subprocess.run([MAGDI, "jobs", "status", "expiring"], env=neo4j_subprocess_env(COLUMNS="200"),
                           capture_output=True, text=True, timeout=60)
    assert recorded[0]["batch_id"] in table.stdout, table.stdout
