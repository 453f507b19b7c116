"""`magdi generate` killed with SIGKILL several times in ONE job, then resumed to completion.

Extends `tests/generator/test_resume.py` (one kill): here the same job is killed at seeded random
moments K times, each `--resume` taking over the dead process's lease at once (same host), and
the last run finishes it. Afterwards: one MAG per question, nothing duplicated, every turn stored
before a kill kept as it was and never requested again; only calls in flight at a kill may have
been answered twice (the killed process never saw those answers).
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest
from generator_helpers import MAGDI, count_responses, neo4j_subprocess_env, running, wait_for, write_panel
from reliability_helpers import Row, assert_clean, final_state, lost_and_duplicated, sim_counts

from magdi.store.graph_store import DebateFilter, GraphStore

CONCURRENCY = 4


def stored(store: GraphStore, job_id: str) -> dict[str, tuple[str | None, str | None, str | None]]:
    out = {}
    for debate_id in store.debate_ids(DebateFilter(job_id=job_id)):
        d = store.get_debate(debate_id)
        for r in d.responses:
            out[d.response_id(r.agent, r.round)] = (r.model, r.prompt_hash, r.raw_text)
    return out


@pytest.mark.parametrize(("n", "kills"), [(8, 3), pytest.param(24, 6, marks=pytest.mark.slow)])
def test_repeated_sigkill_then_resume(n: int, kills: int, store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                      gsm8k: dict[str, Path], tmp_path: Path, record) -> None:  # noqa: ANN001
    panel = start_panel(latency_s=0.25, malformed_rate=0.05)
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url)
    job = f"kill{kills}"
    job_id = f"job-{job}"
    cmd = [MAGDI, "generate", "--panel", str(panel_file), "--dataset", "gsm8k", "--data", str(gsm8k["test"]),
           "--limit", str(n), "--offset", "1280", "--job", job, "--concurrency", str(CONCURRENCY),
           "--max-rounds", "2", "--convincing", str(gsm8k["convincing"]), "--no-progress"]
    env = neo4j_subprocess_env()
    log = tmp_path / "generate.log"
    rng = random.Random(20240607 + kills)
    driver = store.driver
    kept: dict[str, tuple[str | None, str | None, str | None]] = {}
    recover: list[float] = []
    killed_at: list[int] = []
    frozen: dict[tuple[str | None, str | None], int] = {}  # panel count of each stored turn's prompt at a kill
    for k in range(kills):
        have = count_responses(driver, job_id) if k else 0
        target = have + rng.randint(3, 8)  # a random moment: after 3 to 8 more stored turns
        t_start = time.monotonic()
        with running([*cmd, "--resume"] if k else cmd, env, log) as proc:
            if k:  # time from the restart to the resumed process's first stored turn
                wait_for(lambda h=have, p=proc: count_responses(driver, job_id) > h or p.poll() is not None,
                         120, "the resumed run to store a turn", every_s=0.05)
                recover.append(round(time.monotonic() - t_start, 1))
            wait_for(lambda t=target, p=proc: count_responses(driver, job_id) >= t or p.poll() is not None,
                     120, f"turn {target} to be stored")
            if proc.poll() is not None:
                break  # finished before this kill: fewer kills, still a valid run
            proc.kill()
            proc.wait(timeout=10)
            killed_at.append(count_responses(driver, job_id))
        now = stored(store, job_id)
        assert all(now[key] == value for key, value in kept.items()), "a stored turn changed after a kill"
        kept = now
        at_kill = sim_counts(panel.stats())
        frozen.update({(m, h): at_kill.get((m, h), 0) for m, h, _ in kept.values() if (m, h) not in frozen})
    assert len(killed_at) >= min(kills, 2), f"too few kills landed: {killed_at}"
    t0 = time.monotonic()
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=240)
    finish_s = time.monotonic() - t0
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    after = stored(store, job_id)
    assert all(after[key] == value for key, value in kept.items()), "turns stored before a kill were rewritten"
    counts = sim_counts(panel.stats())
    repeated = {key for key, c in counts.items() if c > 1}
    requested_again = [key for key, c in frozen.items() if counts.get(key, 0) != c]
    # a repeated call whose answer is stored once is a call that was in flight at a kill
    state = final_state(store, job_id, n, panel.stats(), repeat_ok=repeated)
    lost, dup = lost_and_duplicated(state)
    record(Row(fault=f"generator SIGKILLed {len(killed_at)} times in one job",
               injected=f"SIGKILL `magdi generate` after {', '.join(map(str, killed_at))} stored turns "
                        f"(seeded random), `--resume` after each",
               happened=f"each --resume took over the dead pid's lease at once and reused the stored turns; "
                        f"{len(repeated)} calls in flight at the kills were answered twice (not stored twice); "
                        f"{state['complete']}/{n} MAGs",
               nodes_lost=lost, nodes_duplicated=dup + len(requested_again),
               recover_s=max(recover or [round(finish_s, 1)]),
               details={"state": state, "killed_at": killed_at, "first_write_after_resume_s": recover}))
    assert_clean(state, n)
    assert not requested_again, f"turns stored before a kill were requested again: {requested_again}"
    assert len(repeated) <= len(killed_at) * CONCURRENCY * 3, "only calls in flight at a kill may be repeated"
