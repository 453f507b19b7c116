"""Batch mode killed between the upload and the ingest of a round, with partially failed batches.

The same job runs twice on one simulated panel (its counters reset in between): synchronously, and
with `--mode batch`, where every batch fails 10 % of its lines (HTTP 500 in the error file). The
batch run is SIGKILLed while a batch of a discussion round is uploaded and recorded but not yet
ingested; `--resume` must poll that batch and ingest it, send none of its requests again, retry the
failed lines in later batches, and end with the same MAGs as the synchronous run: texts, answers,
labels, edges, team answers. A second test kills a queue worker in the same window and lets another
worker take the job over.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from generator_helpers import (
    MAGDI,
    count_responses,
    job_mags,
    neo4j_subprocess_env,
    operator_env,
    panel_batch_lines,
    panel_dict,
    running,
    wait_for,
    write_panel,
)
from reliability_helpers import Row, assert_clean, final_state, lost_and_duplicated

from magdi.mag import TaskType
from magdi.panel import parse_panel
from magdi.store.batches import BatchStore
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.generator.batch_api import TERMINAL
from services.generator.jobspec import build_spec
from services.generator.protocols import ProtocolConfig, load_convincing

BATCH_ENV = {"MAGDI_GENERATOR_BATCH_POLL_S": "0.2", "MAGDI_GENERATOR_BATCH_POLL_MAX_S": "0.5"}
PANEL = {"batch_completion_s": 2.5, "batch_error_rate": 0.1}


def open_batch_of_round(store: GraphStore, job_id: str, min_round: int) -> dict | None:
    """A batch uploaded (created, recorded), not yet ingested, holding turns of round >= min_round, still running."""
    for batch in BatchStore(store).summaries(job_id):
        if (batch["batch_id"] and not batch["ingested"] and batch["status"] not in TERMINAL
                and max(batch["rounds"]) >= min_round):
            return batch
    return None


def check_batches(store: GraphStore, job_id: str, base_url: str) -> dict[str, int]:
    """Every batch the panel got is recorded once and ingested; no custom_id (request attempt) was sent twice."""
    recorded = BatchStore(store).summaries(job_id)
    at_panel = panel_batch_lines(base_url)
    sent = [b["batch_id"] for b in recorded if b["status"] != "not_sent"]
    assert sorted(sent) == sorted(at_panel), f"not recorded: {set(at_panel) - set(sent)}, not sent: {set(sent) - set(at_panel)}"
    assert all(b["ingested"] for b in recorded), [b for b in recorded if not b["ingested"]]
    lines = Counter(cid for ids in at_panel.values() for cid in ids)
    assert max(lines.values()) == 1, [cid for cid, n in lines.items() if n > 1][:5]
    retried = sum(1 for cid in lines if not cid.endswith(".1"))
    return {"batches": len(sent), "lines": len(lines), "retried": retried}


@pytest.mark.parametrize("n", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_batch_job_killed_between_upload_and_ingest_ends_with_the_sync_mags(
        n: int, store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path], tmp_path: Path,  # noqa: ANN001
        record) -> None:  # noqa: ANN001
    panel = start_panel(**PANEL)
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url)
    cmd = [MAGDI, "generate", "--panel", str(panel_file), "--dataset", "gsm8k", "--data", str(gsm8k["test"]),
           "--limit", str(n), "--offset", "300", "--convincing", str(gsm8k["convincing"]), "--no-progress"]
    env = neo4j_subprocess_env(**BATCH_ENV)
    sync = subprocess.run([*cmd, "--job", f"sync{n}"], env=env, capture_output=True, text=True, timeout=900)
    assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
    panel.reset()  # the batch run's counters start empty: every completion below is the batch job's

    job, job_id = f"batch{n}", f"job-batch{n}"
    batch_cmd = [*cmd, "--job", job, "--mode", "batch"]
    log = tmp_path / "batch.log"
    with running(batch_cmd, env, log) as proc:
        wait_for(lambda: open_batch_of_round(store, job_id, 1) is not None or proc.poll() is not None, 600,
                 "a discussion round's batch to be uploaded")
        assert proc.poll() is None, f"finished before the kill: {log.read_text()[-2000:]}"
        proc.kill()  # SIGKILL: the batch is at the panel and recorded, its answers not ingested
        proc.wait(timeout=10)
    killed_in = open_batch_of_round(store, job_id, 1)
    assert killed_in is not None
    turns_at_kill = count_responses(store.driver, job_id)
    open_at_kill = [b["key"] for b in BatchStore(store).summaries(job_id) if not b["ingested"]]

    t0 = time.monotonic()
    with running([*batch_cmd, "--resume"], env, log) as proc:
        wait_for(lambda: count_responses(store.driver, job_id) > turns_at_kill or proc.poll() is not None, 300,
                 "the resumed run to ingest the open batches")
        recover_s = round(time.monotonic() - t0, 1)
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    # every open batch is taken over, except one recorded but never created (killed during its upload):
    # its lines go out again in a new batch
    final = {b["key"]: b for b in BatchStore(store).summaries(job_id)}
    unsent = sum(1 for key in open_at_kill if final[key]["status"] == "not_sent")
    resumed = len(open_at_kill) - unsent
    assert re.search(rf"batches_resumed\W+{resumed}\b", log.read_text()), log.read_text()[-2000:]

    batches = check_batches(store, job_id, panel.base_url)
    state = final_state(store, job_id, n, panel.stats())
    lost, dup = lost_and_duplicated(state)
    sync_mags, batch_mags = job_mags(store, f"job-sync{n}"), job_mags(store, job_id)
    differ = sorted(q for q in sync_mags if sync_mags[q] != batch_mags.get(q))
    jobs = JobStore(store)
    cost_sync, cost_batch = jobs.get(f"job-sync{n}").cost_usd, jobs.get(job_id).cost_usd
    record(Row(fault=f"batch mode: SIGKILL between the upload and the ingest of a round ({n} questions)",
               injected=f"`magdi generate --mode batch` SIGKILLed while batch {killed_in['batch_id']} (round "
                        f"{max(killed_in['rounds'])}, {killed_in['total']} requests) was at the panel and recorded, "
                        f"not ingested; every batch fails 10 % of its lines (HTTP 500); `--resume`",
               happened=f"the resumed run polled and ingested the {resumed} open batch(es) (and {unsent} recorded "
                        f"but never created) and sent none "
                        f"of their requests again; {batches['batches']} batches, {batches['lines']} lines, "
                        f"{batches['retried']} failed lines sent again in a later batch; {state['complete']}/{n} "
                        f"MAGs, {n - len(differ)}/{n} identical to the synchronous run's (texts, answers, labels, "
                        f"edges, team answers); cost {cost_batch:.4f} vs {cost_sync:.4f} USD (same price here)",
               nodes_lost=lost, nodes_duplicated=dup, recover_s=recover_s,
               details={"state": state, "batches": batches, "differ": differ[:10]}))
    assert_clean(state, n)
    assert state["reasks"] == 0 and batches["retried"] > 0, (state, batches)
    assert not differ, f"MAGs that differ from the synchronous run: {differ[:5]}"
    assert cost_batch == pytest.approx(cost_sync)  # the panel file sets no batch price: the same price


def test_worker_killed_mid_batch_is_taken_over(store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                               gsm8k: dict[str, Path], tmp_path: Path, record) -> None:  # noqa: ANN001
    """A batch job queued like `POST /v1/jobs` does; its worker (posing as another host) dies mid-batch."""
    n = 8
    panel = start_panel(**PANEL)
    spec_panel = parse_panel(panel_dict(panel.base_url))
    demos = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, [a.demos_key for a in spec_panel.agents])
    spec = build_spec(name="batch-worker", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=360, limit=n, panel=spec_panel, protocol=ProtocolConfig(max_rounds=2, demos=demos),
                      mode="batch")
    job_id = JobStore(store).create(spec, total=n).id
    env = neo4j_subprocess_env(MAGDI_GENERATOR_POLL_S="0.2", **BATCH_ENV, **operator_env(panel.base_url))
    worker = [sys.executable, "-m", "services.generator"]
    with running(worker, {**env, "MAGDI_GENERATOR_WORKER_ID": "other-host:4242:dead01"}, tmp_path / "w0.log") as doomed:
        wait_for(lambda: open_batch_of_round(store, job_id, 0) is not None or doomed.poll() is not None, 120,
                 "the first worker to upload a batch")
        doomed.kill()
        doomed.wait(timeout=10)
    open_at_kill = [b["batch_id"] for b in BatchStore(store).summaries(job_id) if not b["ingested"]]
    assert open_at_kill
    t0 = time.monotonic()
    jobs = JobStore(store)
    with running(worker, env, tmp_path / "w1.log") as heir:  # claims the job once the dead one's lease expired
        wait_for(lambda: jobs.get(job_id).status.value in ("complete", "failed") or heir.poll() is not None, 300,
                 "the second worker to finish the job")
    took_s = round(time.monotonic() - t0, 1)
    batches = check_batches(store, job_id, panel.base_url)
    state = final_state(store, job_id, n, panel.stats())
    lost, dup = lost_and_duplicated(state)
    record(Row(fault="batch mode: worker SIGKILLed mid-batch, job taken over by another worker",
               injected="a queued `mode: batch` job; its worker (posing as another host) SIGKILLed with "
                        f"{len(open_at_kill)} batch(es) uploaded and recorded, not ingested; lease 5 s",
               happened=f"the second worker claimed the job once the lease expired, polled and ingested the open "
                        f"batches and sent none of their requests again; {batches['batches']} batches, "
                        f"{batches['retried']} failed lines sent again; {state['complete']}/{n} MAGs",
               nodes_lost=lost, nodes_duplicated=dup, recover_s=took_s, details={"state": state, "batches": batches}))
    assert_clean(state, n)
