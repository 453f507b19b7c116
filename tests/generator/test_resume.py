"""`magdi generate` killed with SIGKILL mid-job, then `--resume`d, as real subprocesses.

What must hold afterwards: exactly one MAG per question, no duplicated node, and no stored turn
requested again. The simulated panel counts completed calls per (model, prompt hash); a stored
turn's prompt must have been completed exactly once. Calls that were in flight at the kill were
already completed by the panel but never seen by the killed process, so they may be made again
by the resumed run; there can be at most as many of those as there were calls in flight.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from generator_helpers import MAGDI, count_responses, neo4j_subprocess_env, running, wait_for, write_panel

from magdi.mag import DebateStatus, JobStatus
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore

N_QUESTIONS = 16
CONCURRENCY = 4


def stored_turns(store: GraphStore, job_id: str) -> dict[str, tuple[str | None, str | None, str | None]]:
    """response id -> (model, prompt hash, raw text) of every stored turn of the job."""
    out = {}
    for debate_id in store.debate_ids(DebateFilter(job_id=job_id)):
        d = store.get_debate(debate_id)
        assert d is not None
        for r in d.responses:
            out[d.response_id(r.agent, r.round)] = (r.model, r.prompt_hash, r.raw_text)
    return out


def test_sigkill_then_resume(store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path],  # noqa: ANN001
                             tmp_path: Path) -> None:
    panel = start_panel(latency_s=0.3, malformed_rate=0.05)
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url)
    job_id = "job-killme"
    cmd = [MAGDI, "generate", "--panel", str(panel_file), "--dataset", "gsm8k", "--data", str(gsm8k["test"]),
           "--limit", str(N_QUESTIONS), "--offset", "40", "--job", "killme", "--concurrency", str(CONCURRENCY),
           "--convincing", str(gsm8k["convincing"]), "--no-progress"]
    env = neo4j_subprocess_env()
    log = tmp_path / "generate.log"
    driver = store.driver

    with running(cmd, env, log) as proc:
        wait_for(lambda: count_responses(driver, job_id) >= 15 or proc.poll() is not None, 120, "turns to be stored")
        assert proc.poll() is None, f"finished before the kill: {log.read_text()[-2000:]}"
        proc.kill()  # SIGKILL: no cleanup, no lease release
        proc.wait(timeout=10)
    before = stored_turns(store, job_id)
    job = JobStore(store).get(job_id)
    assert job is not None and job.status is JobStatus.RUNNING, "the killed run left its lease behind"
    assert 15 <= len(before) < N_QUESTIONS * 12

    t0 = time.monotonic()
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert time.monotonic() - t0 < 120
    assert "reused_turns" in resumed.stdout

    # exactly one MAG per question, all complete, and no duplicated node
    ids = store.debate_ids(DebateFilter(job_id=job_id))
    assert len(ids) == N_QUESTIONS
    debates = [store.get_debate(i) for i in ids]
    assert all(d is not None and d.status is DebateStatus.COMPLETE for d in debates)
    records, _, _ = driver.execute_query(
        "MATCH (d:Debate {job_id: $job})-[h:HAS_RESPONSE]->(r:Response) "
        "RETURN count(h) AS links, count(DISTINCT r) AS nodes, count(DISTINCT r.id) AS ids, "
        "count(DISTINCT [r.debate_id, r.agent, r.round]) AS slots", job=job_id)
    row = records[0]
    assert row["links"] == row["nodes"] == row["ids"] == row["slots"]
    assert row["nodes"] == sum(len(d.responses) for d in debates)
    dupes, _, _ = driver.execute_query("MATCH (d:Debate) WHERE d.job_id = $job WITH d.question_id AS q, count(*) AS n "
                                       "WHERE n > 1 RETURN q", job=job_id)
    assert not dupes

    # stored turns were kept as they were and never requested again
    after = stored_turns(store, job_id)
    assert all(after[k] == v for k, v in before.items())
    counts = {(p["model"], p["prompt_sha256"]): p["count"] for p in panel.stats()["by_prompt"]}
    for model, prompt_hash, _raw in before.values():
        assert counts.get((model, prompt_hash), 0) <= 1, "a stored turn was requested again"
    repeated = {k for k, n in counts.items() if n > 1}
    stored_keys = {(m, h) for m, h, _ in before.values()}
    assert not repeated & stored_keys
    assert len(repeated) <= CONCURRENCY * 3, "only calls in flight at the kill may have been made twice"
    print(f"killed with {len(before)} turns stored; calls in flight at the kill made again: {len(repeated)}")
    assert JobStore(store).get(job_id).status is JobStatus.COMPLETE
