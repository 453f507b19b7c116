"""Two and four queue workers (`python -m services.generator` subprocesses) on the same queued jobs.

One worker poses as a worker on another host and is SIGKILLed mid-job, so the others cannot see
that it died: they must wait for its lease to expire and then take the job over. Afterwards every
job is complete with one MAG per question; no debate ran in two workers (each job was claimed
once, except the dead worker's, claimed again only after its lease ran out); nothing is
duplicated; only the dead worker's in-flight calls may have been answered twice.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from generator_helpers import (
    count_responses,
    neo4j_subprocess_env,
    operator_env,
    panel_dict,
    running,
    wait_for,
)
from reliability_helpers import Row, assert_clean, final_state, lost_and_duplicated, sim_counts
from test_worker import claims

from magdi.mag import JobStatus, TaskType
from magdi.panel import parse_panel
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.generator.jobspec import build_spec
from services.generator.protocols import ProtocolConfig, load_convincing

WORKER = [sys.executable, "-m", "services.generator"]
JOBS, PER_JOB, CONCURRENCY, LEASE_S = 4, 3, 2, 5


def queue(jobs: JobStore, name: str, base_url: str, gsm8k: dict[str, Path], offset: int) -> str:
    panel = parse_panel(panel_dict(base_url))
    demos = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, [a.demos_key for a in panel.agents])
    spec = build_spec(name=name, dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=offset, limit=PER_JOB, panel=panel, protocol=ProtocolConfig(max_rounds=1, demos=demos))
    return jobs.create(spec, total=PER_JOB).id


@pytest.mark.parametrize("workers", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_workers_share_jobs_and_take_over_a_dead_ones(workers: int, store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                                      gsm8k: dict[str, Path], tmp_path: Path, record) -> None:  # noqa: ANN001
    panel = start_panel(latency_s=0.25)
    jobs = JobStore(store)
    job_ids = [queue(jobs, f"w{workers}-{i}", panel.base_url, gsm8k, 1100 + 20 * (workers == 4) + 5 * i) for i in range(JOBS)]
    env = neo4j_subprocess_env(MAGDI_GENERATOR_CONCURRENCY=str(CONCURRENCY), MAGDI_GENERATOR_POLL_S="0.2",
                               **operator_env(panel.base_url))
    logs = [tmp_path / f"w{i}.log" for i in range(workers)]
    doomed_env = {**env, "MAGDI_GENERATOR_WORKER_ID": "other-host:4242:dead00"}
    with running(WORKER, doomed_env, logs[0]) as doomed:
        wait_for(lambda: bool(claims(logs[0])) or doomed.poll() is not None, 60, "the doomed worker to claim a job")
        orphan = claims(logs[0])[0][1]
        wait_for(lambda: count_responses(store.driver, orphan) >= 3 or doomed.poll() is not None, 60,
                 "the doomed worker to store turns")
        assert doomed.poll() is None, logs[0].read_text()[-2000:]
        others = [running(WORKER, env, log) for log in logs[1:]]
        procs = [cm.__enter__() for cm in others]
        try:
            time.sleep(0.5)
            doomed.kill()  # SIGKILL, lease left behind
            doomed.wait(timeout=10)
            t_kill = time.monotonic()
            lease_until = jobs.get(orphan).lease_until
            wait_for(lambda: all(jobs.get(j).status is JobStatus.COMPLETE for j in job_ids)
                     or any(p.poll() is not None for p in procs), 180, "the queue to drain", every_s=0.3)
            t_done = time.monotonic()
            assert all(p.poll() is None for p in procs), "\n".join(log.read_text()[-1500:] for log in logs)
        finally:
            for cm in reversed(others):
                cm.__exit__(None, None, None)
    stats = panel.stats()
    counts = sim_counts(stats)
    repeated = {key for key, n in counts.items() if n > 1}
    claimed = claims(*logs)
    takeover = [c for c in claimed if c[1] == orphan and c[0] != "other-host:4242:dead00"]
    states = {j: final_state(store, j, PER_JOB, stats,
                             repeat_ok=repeated if j == orphan else set()) for j in job_ids}
    lost = sum(lost_and_duplicated(s)[0] for s in states.values())
    dup = sum(lost_and_duplicated(s)[1] for s in states.values())
    record(Row(fault=f"{workers} workers on one queue, one SIGKILLed",
               injected=f"{workers} `python -m services.generator` workers, {JOBS} queued jobs; the first "
                        f"(posing as another host) SIGKILLed mid-job, lease {LEASE_S} s",
               happened=f"each job claimed once, the dead worker's job re-claimed after its lease expired; "
                        f"{len(repeated)} in-flight calls answered twice; {sum(s['complete'] for s in states.values())}"
                        f"/{JOBS * PER_JOB} MAGs",
               nodes_lost=lost, nodes_duplicated=dup, recover_s=round(t_done - t_kill, 1),
               details={"claims": [(w, j, str(u)) for w, j, u in claimed], "repeated": len(repeated)}))
    for state in states.values():
        assert_clean(state, PER_JOB)
    by_job: dict[str, list[str]] = {}
    for worker, job, _ in claimed:
        by_job.setdefault(job, []).append(worker)
    assert sorted(by_job) == sorted(job_ids), by_job
    for job_id, owners in by_job.items():
        assert len(owners) == (2 if job_id == orphan else 1), f"{job_id} claimed by {owners}"
    assert len(takeover) == 1
    assert takeover[0][2].timestamp() - LEASE_S >= lease_until.timestamp() - 0.05, "taken before the lease expired"
    assert len(repeated) <= CONCURRENCY * 3, "only the dead worker's in-flight calls may be repeated"
