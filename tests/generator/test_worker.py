"""Queue workers (`python -m services.generator`) as real subprocesses on one Neo4j.

Leases are per job: two workers polling the same queue never run the same job (so never the
same debate), none is lost, and a job whose worker died is taken over once its lease expires.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

from generator_helpers import (
    count_responses,
    neo4j_subprocess_env,
    operator_env,
    panel_dict,
    running,
    stop_pid,
    wait_for,
)

from magdi.mag import DebateStatus, JobStatus, TaskType
from magdi.panel import parse_panel
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore
from services.generator.jobspec import build_spec
from services.generator.protocols import ProtocolConfig, load_convincing

WORKER = [sys.executable, "-m", "services.generator"]
CLAIMED = re.compile(r"worker (\S+) claimed job (\S+) \(lease until (\S+)\)")


def queue_job(jobs: JobStore, name: str, base_url: str, gsm8k: dict[str, Path], offset: int, limit: int) -> str:
    panel = parse_panel(panel_dict(base_url))
    demos = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, [a.demos_key for a in panel.agents])
    spec = build_spec(name=name, dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=offset, limit=limit, panel=panel, protocol=ProtocolConfig(demos=demos))
    return jobs.create(spec, total=limit).id


def claims(*logs: Path) -> list[tuple[str, str, datetime]]:
    found = []
    for log in logs:
        for worker, job, until in CLAIMED.findall(log.read_text() if log.exists() else ""):
            found.append((worker, job, datetime.fromisoformat(until)))
    return found


def assert_job_done(store: GraphStore, job_id: str, n: int) -> None:
    ids = store.debate_ids(DebateFilter(job_id=job_id))
    assert len(ids) == n, f"{job_id}: {len(ids)} debates, expected {n}"
    assert all(store.get_debate(i).status is DebateStatus.COMPLETE for i in ids)
    job = JobStore(store).get(job_id)
    assert job is not None and job.status is JobStatus.COMPLETE and job.done == n


def test_two_workers_share_the_queue(store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path],  # noqa: ANN001
                                     tmp_path: Path) -> None:
    panel = start_panel(latency_s=0.05)
    jobs = JobStore(store)
    job_ids = [queue_job(jobs, f"q{i}", panel.base_url, gsm8k, offset=100 + 5 * i, limit=5) for i in range(3)]
    env = neo4j_subprocess_env(MAGDI_GENERATOR_ONCE="true", **operator_env(panel.base_url))
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    with running(WORKER, env, logs[0]) as w1, running(WORKER, env, logs[1]) as w2:
        wait_for(lambda: w1.poll() is not None and w2.poll() is not None, 180, "both workers to drain the queue",
                 every_s=0.5)
        assert w1.returncode == 0 and w2.returncode == 0, logs[0].read_text()[-2000:] + logs[1].read_text()[-2000:]
    for job_id in job_ids:
        assert_job_done(store, job_id, 5)
    claimed = claims(*logs)
    assert sorted(job for _, job, _ in claimed) == sorted(job_ids), "each job claimed exactly once"
    stats = panel.stats()
    assert stats["max_completions_per_prompt"] == 1, "no debate (no call) was run twice"


def test_lease_expiry_hands_a_dead_workers_job_to_another(store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                                          gsm8k: dict[str, Path], tmp_path: Path) -> None:
    panel = start_panel(latency_s=0.3)
    jobs = JobStore(store)
    job_id = queue_job(jobs, "orphan", panel.base_url, gsm8k, offset=200, limit=10)
    env = neo4j_subprocess_env(MAGDI_GENERATOR_ONCE="true", MAGDI_GENERATOR_CONCURRENCY="2",
                               **operator_env(panel.base_url))
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    # A looks like a worker on another machine: B cannot see that it died, only that its lease ran out
    with running(WORKER, {**env, "MAGDI_GENERATOR_WORKER_ID": "other-host:4242:aaaaaa"}, log_a) as a:
        wait_for(lambda: count_responses(store.driver, job_id) >= 8 or a.poll() is not None, 120, "worker A to work")
        assert a.poll() is None, log_a.read_text()[-2000:]
        a.kill()  # SIGKILL: the lease stays until it expires
        a.wait(timeout=10)
    orphaned = jobs.get(job_id)
    assert orphaned is not None and orphaned.status is JobStatus.RUNNING and orphaned.lease_until is not None
    env_b = {**env, "MAGDI_GENERATOR_ONCE": "false", "MAGDI_GENERATOR_POLL_S": "0.2"}  # B keeps polling
    with running(WORKER, env_b, log_b) as b:
        wait_for(lambda: jobs.get(job_id).status is JobStatus.COMPLETE or b.poll() is not None, 180,
                 "worker B to take over and finish the job", every_s=0.5)
        assert b.poll() is None, log_b.read_text()[-3000:]
    assert b.returncode == 0, "SIGTERM on an idle worker is a clean exit"
    assert_job_done(store, job_id, 10)
    (a_claim,), (b_claim,) = claims(log_a), claims(log_b)
    assert a_claim[1] == b_claim[1] == job_id and a_claim[0] != b_claim[0]
    b_claimed_at = b_claim[2] - timedelta(seconds=5)  # lease_until = claim time + lease_s (Neo4j clock)
    assert b_claimed_at >= orphaned.lease_until - timedelta(seconds=0.05), "B waited for A's lease to expire"
    counts = {(p["model"], p["prompt_sha256"]): p["count"] for p in panel.stats()["by_prompt"]}
    assert len([n for n in counts.values() if n > 1]) <= 2 * 3, "only A's in-flight calls may be repeated"


def test_sigterm_drains_in_flight_turns_and_releases_the_job(store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                                             gsm8k: dict[str, Path], tmp_path: Path) -> None:
    panel = start_panel(latency_s=0.3)
    jobs = JobStore(store)
    job_id = queue_job(jobs, "drained", panel.base_url, gsm8k, offset=300, limit=10)
    env = neo4j_subprocess_env(MAGDI_GENERATOR_ONCE="true", MAGDI_GENERATOR_CONCURRENCY="3",
                               **operator_env(panel.base_url))
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    with running(WORKER, env, log_a) as a:
        wait_for(lambda: count_responses(store.driver, job_id) >= 6 or a.poll() is not None, 120, "worker A to work")
        assert a.poll() is None, log_a.read_text()[-2000:]
        a.terminate()  # SIGTERM
        a.wait(timeout=30)
    assert a.returncode == 0, log_a.read_text()[-3000:]
    released = jobs.get(job_id)
    assert released is not None and released.status is JobStatus.QUEUED and released.lease_owner is None
    assert "draining" in log_a.read_text()
    with running(WORKER, env, log_b) as b:
        wait_for(lambda: b.poll() is not None, 180, "worker B to finish the job", every_s=0.5)
    assert_job_done(store, job_id, 10)
    assert panel.stats()["max_completions_per_prompt"] == 1, "a clean drain loses no call: nothing is repeated"


def test_magdi_worker_logs_its_jobs_without_v_and_exits_1_when_one_failed(store: GraphStore, neo4j_env,  # noqa: ANN001
                                                                          start_panel, gsm8k: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """`magdi worker --once` as an operator runs it: claims and failures readable at the default level,
    a failed job in the exit status, and `-v` shows our debug lines without the driver's bolt traffic."""
    panel = start_panel()
    jobs = JobStore(store)
    job_id = queue_job(jobs, "unreachable", panel.base_url, gsm8k, offset=0, limit=2)
    stop_pid(panel.proc)  # the endpoint is gone before the worker's preflight: the job fails, no call is made
    env = neo4j_subprocess_env(**operator_env(panel.base_url))
    magdi = [sys.executable, "-m", "magdi.cli"]
    log = tmp_path / "worker.log"
    with running([*magdi, "worker", "--once"], env, log) as proc:
        wait_for(lambda: proc.poll() is not None, 120, "the worker to drain the queue", every_s=0.5)
    out = log.read_text()
    assert proc.returncode == 1, out[-3000:]
    assert [job for _, job, _ in claims(log)] == [job_id], out[-3000:]
    assert f"job {job_id} cannot run" in out and "1 job(s) failed" in out
    assert jobs.get(job_id).status is JobStatus.FAILED

    verbose_log = tmp_path / "verbose.log"
    with running([*magdi, "-v", "worker", "--once"], env, verbose_log) as proc:
        wait_for(lambda: proc.poll() is not None, 120, "the idle worker to exit", every_s=0.5)
    verbose = verbose_log.read_text()
    assert proc.returncode == 0, verbose[-3000:]
    assert "polling for jobs" in verbose and "DEBUG neo4j" not in verbose
