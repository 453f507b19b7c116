"""The endpoint rows of the fault matrix: one small job per fault kind, final state checked exactly.

One simulated panel (a real HTTP server) serves every row; each row talks to its own three model
aliases, on which ONE fault is turned up high (`per_model`), and runs a
6-question, 3-agent ReConcile job in-process against the session's real Neo4j, and then checks
the final state: one complete MAG per question, every MAG consistent with the protocol (the
generator tests' `check_mag`: nodes, INFORMS edges rebuilt from the prompt hashes, invalid turns
with raw text, absent turns with the error), no duplicated node or edge, every answer the panel
completed stored exactly once (by prompt hash), and the job's counters equal to the stored MAGs.
`test_engine_faults.py` runs all faults mixed at low rates on 30 questions; this file isolates
each one at a high rate so that a regression names the fault that caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from generator_helpers import THREE, Panel, panel_dict, wait_for
from reliability_helpers import GENERATOR_TESTS, REPO, Row, assert_clean, final_state, lost_and_duplicated
from test_engine_faults import check_mag

from magdi.mag import DebateStatus, JobStatus, ParseStatus, TaskType
from magdi.panel import parse_panel
from magdi.processes import free_port, stop_process
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore
from services.generator.jobrun import new_worker_id, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import ProtocolConfig, build_protocol, load_convincing
from services.generator.settings import GeneratorSettings

N = 6
MAX_ROUNDS = 2
WINDOW_S = 1.0  # the panel's quota window (60 s in production), so a 429 costs about a second
DOWN = {"failure_threshold": 3, "cooldown_s": 0.2, "max_cooldown_s": 0.4, "down_after_s": 1.5}
RECORDED = [m for _, m, _ in THREE]

# row -> (how it is injected (for the report), overrides for the row's 3 model names (None: all three,
# else only the first), panel client overrides, the panel's fault counter that must grow)
ROWS: dict[str, tuple[str, dict[str, Any], bool, dict[str, Any], str]] = {
    "429 with Retry-After": ("one teacher limited to 3 requests per 1 s window, Retry-After sent",
                             {"rpm_limit": 3}, True, {}, "rate_limited"),
    "429 without Retry-After": ("one teacher limited to 3 requests per 1 s window, no Retry-After",
                                {"rpm_limit": 3, "retry_after_header": False}, True, {}, "rate_limited"),
    "HTTP 500/502/503": ("error_rate=0.3", {"error_rate": 0.3}, False, {}, "server_error"),
    "connection reset": ("reset_rate=0.3 (connection closed mid-body)", {"reset_rate": 0.3}, False, {}, "reset"),
    "timeout": ("timeout_rate=0.2, hang 3 s > client timeout 0.5 s", {"timeout_rate": 0.2, "hang_s": 3.0}, False,
                {"timeout_s": 0.5}, "hang"),
    "truncated body": ("truncated_body_rate=0.3 (HTTP 200, JSON cut in half)", {"truncated_body_rate": 0.3},
                       False, {}, "truncated_body"),
    "malformed JSON content": ("malformed_rate=0.3", {"malformed_rate": 0.3}, False, {}, "malformed"),
    "empty content": ("empty_rate=0.3", {"empty_rate": 0.3}, False, {}, "empty"),
    "wrong usage": ("wrong_usage_rate=0.5 (usage missing or negative)", {"wrong_usage_rate": 0.5}, False, {},
                    "wrong_usage"),
    "endpoint down for the whole job": ("one teacher always answers 503", {}, True, {"breaker": DOWN}, "down"),
}


def names(i: int) -> list[str]:
    """The three model names row `i` uses (aliases of the recorded models, with their own faults)."""
    return [f"row{i}-{m}" for m in RECORDED]


@pytest.fixture(scope="module")
def matrix_panel(gsm8k: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    """ONE simulated panel for every row: each row talks to its own aliases, which carry its faults."""
    from services.teachers.config import PanelSimConfig

    aliases, per_model, down = {}, {}, []
    for i, (fault, (_, knobs, first_only, _, _)) in enumerate(ROWS.items()):
        row = names(i)
        aliases.update(zip(row, RECORDED, strict=True))
        for name in row[:1] if first_only else row:
            if knobs:
                per_model[name] = knobs
        if fault.startswith("endpoint down"):
            down.append(row[0])
    config = PanelSimConfig(solutions_path=gsm8k["solutions"], questions_path=gsm8k["test"], latency_s=0.01,
                            aliases=aliases, per_model=per_model, down_models=down)
    tmp = tmp_path_factory.mktemp("matrix-panel")
    (tmp / "panel.json").write_text(config.model_dump_json())
    port, log = free_port(), tmp / "panel.log"
    cmd = [sys.executable, str(GENERATOR_TESTS / "short_window_panel.py"), "--window", str(WINDOW_S),
           "--config", str(tmp / "panel.json"), "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    panel = Panel(proc, port, log)
    try:
        wait_for(lambda: proc.poll() is not None or _answers(panel), 60, "the panel to answer")
        assert proc.poll() is None, log.read_text()[-2000:]
        yield panel
    finally:
        panel.http.close()
        stop_process(proc)


def _answers(panel: Panel) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return panel.http.get(f"{panel.base_url}/models").status_code == 200
    return False


@pytest.mark.parametrize("fault", list(ROWS))
def test_endpoint_fault(fault: str, store: GraphStore, matrix_panel: Panel, gsm8k: dict[str, Path],
                        record) -> None:  # noqa: ANN001
    i = list(ROWS).index(fault)
    injected, _, _, client, counter = ROWS[fault]
    row_models = names(i)
    agents = [(n, m, d) for (n, _, d), m in zip(THREE, row_models, strict=True)]
    panel = parse_panel(panel_dict(matrix_panel.base_url, agents=agents, **({"timeout_s": 2.0} | client)))
    demos = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, [a.demos_key for a in panel.agents])
    protocol_cfg = ProtocolConfig(max_rounds=MAX_ROUNDS, demos=demos)
    offset = 1000 + 10 * i
    spec = build_spec(name=f"fault-{i}", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=offset, limit=N, panel=panel, protocol=protocol_cfg)
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=N, lease_s=30, counters_every_s=1.0)
    faults_before = matrix_panel.stats()["faults"]
    t0 = time.monotonic()
    jobs.create(spec, total=N, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=t0))
    elapsed = time.monotonic() - t0

    stats = matrix_panel.stats()
    exercised = stats["faults"].get(counter, 0) - faults_before.get(counter, 0)
    stats["by_prompt"] = [p for p in stats["by_prompt"] if p["model"] in row_models]
    state = final_state(store, spec.id, N, stats)
    lost, dup = lost_and_duplicated(state)
    happened = (f"{exercised} `{counter}` answers absorbed; job {state['job_status']}, {state['complete']}/{N} MAGs complete"
                f"{f', {n_failed} failed (no valid answer, stored as failed)' if (n_failed := state['failed']) else ''}, "
                f"turns {_fmt(state['parse_status'])}, {state['reasks']} re-asks")
    if fault.startswith("endpoint down"):
        happened += "; the job error names the endpoint"
    record(Row(fault=fault, injected=injected, happened=happened, nodes_lost=lost, nodes_duplicated=dup,
               recover_s=round(elapsed, 1), details={"state": state, "exercised": exercised}))

    assert exercised > 0, f"the fault was never injected: {stats['faults']}"
    assert result.status is JobStatus.COMPLETE, result.errors
    assert_clean(state, N)
    protocol = build_protocol(protocol_cfg, {a.name: a.demos_key for a in panel.agents})
    for debate_id in store.debate_ids(DebateFilter(job_id=spec.id)):
        debate = store.get_debate(debate_id)
        if debate.status is DebateStatus.FAILED:  # no valid answer at all: every turn kept with its error
            assert all(r.parse_status is not ParseStatus.VALID and r.parse_error for r in debate.responses)
            assert {r.agent for r in debate.responses if r.round == 0} == {a.name for a in debate.panel}
        else:
            check_mag(debate, protocol, max_rounds=MAX_ROUNDS)
    if fault.startswith("endpoint down"):
        assert any(row_models[0] in e and "down" in e for e in state["job_errors"]), state["job_errors"]
        assert state["parse_status"].get("absent", 0) == N, "the down agent: one absent turn per debate"
    else:
        assert state["parse_status"].get("absent", 0) == 0, f"every call was retried to success: {state}"
    assert elapsed < 60, f"took {elapsed:.0f} s"


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
