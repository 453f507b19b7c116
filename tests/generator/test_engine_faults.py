"""A 3-agent ReConcile job on 30 GSM8K questions against the simulated panel with faults on.

Real Neo4j, real HTTP: 429s with Retry-After (short quota window), 5xx, hangs past the client
timeout, malformed/empty content, cut bodies, dropped connections and bogus usage. Every stored
MAG is then checked against the protocol: nodes, INFORMS edges (exactly what was in each
prompt, proved by rebuilding the prompt and matching its hash), labels, recalibrated
confidences, team answer = weighted vote, and invalid turns stored as invalid with raw text.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from generator_helpers import endpoint_defaults, panel_dict

from magdi.answers import (
    AnswerParseError,
    is_equivalent,
    majority_vote,
    recalibrate_confidence,
    weighted_vote,
)
from magdi.mag import Debate, DebateStatus, JobStatus, ParseStatus, Question, Response, TaskType
from magdi.panel import parse_panel
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore
from services.generator.client import prompt_hash
from services.generator.jobrun import new_worker_id, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import ProtocolConfig, build_protocol, load_convincing, parse_turn
from services.generator.protocols.base import final_answers
from services.generator.settings import GeneratorSettings

FAULTS = {"latency_s": 0.01, "rpm_limit": 12, "error_rate": 0.05, "timeout_rate": 0.03, "hang_s": 3.0,
          "malformed_rate": 0.08, "empty_rate": 0.02, "truncated_body_rate": 0.02, "wrong_usage_rate": 0.05,
          "reset_rate": 0.02}


def check_outputs(r: Response, q: Question) -> None:
    """Every completion call of the turn is kept, in order; the node's raw text is the last reply."""
    assert r.outputs and r.outputs[0].reask is None and len(r.outputs) <= 2
    assert sum(o.attempts or 0 for o in r.outputs) == r.attempts
    texts = [o.text for o in r.outputs if o.text is not None]
    if r.parse_status is ParseStatus.ABSENT:
        assert not texts and r.outputs[0].error
        return
    assert texts and texts[-1] == r.raw_text
    if len(r.outputs) == 2:  # re-asked: the first reply could not be parsed, and it is still here
        first, second = r.outputs
        assert first.text is not None and second.reask and second.reask.startswith("Your previous reply")
        with pytest.raises(AnswerParseError):
            parse_turn(first.text, q)


def check_mag(d: Debate, protocol, max_rounds: int) -> None:  # noqa: ANN001, C901 - one checklist
    q = d.question
    by_round: dict[int, dict[str, object]] = {}
    for r in d.responses:
        by_round.setdefault(r.round, {})[r.agent] = r
    rounds = sorted(by_round)
    assert rounds == list(range(len(rounds))) and len(rounds) <= max_rounds + 1
    assert set(by_round[0]) == {a.name for a in d.panel}, "round 0: every agent"
    for rnd in rounds[1:]:
        prev = [r for r in by_round[rnd - 1].values() if r.parse_status is ParseStatus.VALID]
        assert len({r.answer for r in prev}) > 1, "a discussion round only follows disagreement"
    last = [r for r in by_round[rounds[-1]].values() if r.parse_status is ParseStatus.VALID]
    if rounds[-1] < max_rounds:
        assert len({r.answer for r in last}) <= 1, "stopped early only on agreement"

    incoming: dict[tuple[str, int], set[tuple[str, int]]] = {}
    for e in d.edges:
        incoming.setdefault((e.target_agent, e.target_round), set()).add((e.source_agent, e.source_round))
        src = d.response(e.source_agent, e.source_round)
        assert src is not None and src.parse_status is ParseStatus.VALID and e.target_round == e.source_round + 1
    for r in d.responses:
        # rebuild the prompt this turn was made from: same hash => the edges are what was shown
        before = d.model_copy(update={"responses": [x for x in d.responses if x.round < r.round], "edges": []})
        req = next(t for t in protocol.turns(before, r.round) if t.agent == r.agent)
        assert r.prompt_hash == prompt_hash(req.messages)
        assert [m.model_dump() for m in r.prompt or []] == req.messages, "the prompt is stored as sent"
        check_outputs(r, q)
        expected = set(req.sources) if r.parse_status is not ParseStatus.ABSENT else set()
        assert incoming.get((r.agent, r.round), set()) == expected
        if r.round > 0:
            assert expected == {(a, r.round - 1) for a, x in by_round[r.round - 1].items()
                                if x.parse_status is ParseStatus.VALID}, "topology 'all': every valid answer"
            text = req.messages[-1]["content"]
            for a, rnd in expected:
                assert f"I think the answer is {d.response(a, rnd).answer} because" in text
        assert r.attempts and r.attempts >= 1 and r.model == next(a.model for a in d.panel if a.name == r.agent)
        if r.parse_status is ParseStatus.VALID:
            assert r.correct == is_equivalent(r.answer, q.gold_answer, q.task, q.options)
            assert r.confidence is not None and r.recalibrated_confidence == recalibrate_confidence(r.confidence)
            assert r.raw_text and r.reasoning is not None
            if r.tokens_in is not None:
                assert r.tokens_out is not None and r.cost_usd is not None and r.cost_usd > 0
        elif r.parse_status is ParseStatus.INVALID:
            assert r.answer is None and r.correct is None and r.raw_text is not None and r.parse_error, \
                "docs/method.md D17: an unparseable turn keeps its raw text and gets no invented answer"
        else:
            assert r.parse_error and r.raw_text is None
    finals = final_answers(d)
    assert d.team_answer == weighted_vote([r.answer for r in finals], [r.confidence for r in finals])
    assert d.majority_answer == majority_vote([r.answer for r in finals])
    assert d.team_correct == is_equivalent(d.team_answer, q.gold_answer, q.task, q.options)
    assert d.rounds_used == len(rounds) and d.status is DebateStatus.COMPLETE


def test_thirty_questions_with_faults(store: GraphStore, start_panel, gsm8k: dict[str, Path]) -> None:  # noqa: ANN001
    t0 = time.monotonic()
    panel_srv = start_panel(window_s=2.0, **FAULTS)
    panel = parse_panel(panel_dict(panel_srv.base_url, timeout_s=1.0))
    demos = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, [a.demos_key for a in panel.agents])
    protocol_cfg = ProtocolConfig(max_rounds=3, demos=demos)
    spec = build_spec(name="faults", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=0, limit=30, panel=panel, protocol=protocol_cfg)
    prepared = prepare(spec)
    jobs = JobStore(store)
    worker = new_worker_id()
    settings = GeneratorSettings(concurrency=16, lease_s=30, counters_every_s=1.0)
    claimed_at = time.monotonic()
    jobs.create(spec, total=30, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepared, store, jobs, worker, settings, claimed_at=claimed_at))
    elapsed = time.monotonic() - t0

    assert result.status is JobStatus.COMPLETE, result.errors
    stats = panel_srv.stats()
    faults = stats["faults"]
    for kind in ("rate_limited", "server_error", "hang", "malformed"):
        assert faults.get(kind, 0) > 0, f"fault {kind} was never exercised: {faults}"
    assert stats["max_completions_per_prompt"] == 1, "no successful call was repeated"

    ids = store.debate_ids(DebateFilter(job_id=spec.id))
    assert len(ids) == 30
    protocol = build_protocol(protocol_cfg, {a.name: a.demos_key for a in panel.agents})
    debates = [store.get_debate(i) for i in ids]
    for d in debates:
        check_mag(d, protocol, max_rounds=3)
    responses = [r for d in debates for r in d.responses]
    assert any(r.parse_status is ParseStatus.INVALID for r in responses) or faults.get("malformed", 0) > 0
    assert any(r.round > 0 for r in responses), "some debates needed discussion"
    assert any(r.tokens_in is None for r in responses) == (faults.get("wrong_usage", 0) > 0)

    job = jobs.get(spec.id)
    assert job is not None and job.done == 30 and job.failed == 0 and job.lease_owner is None
    assert job.tokens_in == sum(r.tokens_in or 0 for r in responses)
    assert job.cost_usd > 0
    assert elapsed < 90, f"took {elapsed:.0f} s"


def test_an_endpoint_down_for_the_whole_job(store: GraphStore, start_panel, gsm8k: dict[str, Path]) -> None:  # noqa: ANN001
    """Its turns are stored as absent with the error; the job finishes the rest and names it."""
    panel_srv = start_panel(latency_s=0.01, down_models=["6b_verification"])
    panel = parse_panel(panel_dict(panel_srv.base_url, breaker={"failure_threshold": 3, "cooldown_s": 0.2,
                                                                 "max_cooldown_s": 0.4, "down_after_s": 1.5}))
    spec = build_spec(name="down", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=500, limit=8, panel=panel, protocol=ProtocolConfig())
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=4, lease_s=30)
    claimed_at = time.monotonic()
    jobs.create(spec, total=8, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=claimed_at))
    assert result.status is JobStatus.COMPLETE
    job = jobs.get(spec.id)
    assert job.done == 8 and any("6b_verification" in e and "down" in e for e in job.errors), job.errors
    for debate_id in store.debate_ids(DebateFilter(job_id=spec.id)):
        d = store.get_debate(debate_id)
        down = [r for r in d.responses if r.agent == "verifier-6b"]
        assert [(r.round, r.parse_status) for r in down] == [(0, ParseStatus.ABSENT)], "tried once, then sat out"
        assert down[0].parse_error and down[0].answer is None
        assert not [e for e in d.edges if "verifier-6b" in (e.source_agent, e.target_agent)]
        assert d.status is DebateStatus.COMPLETE and "verifier-6b dropped out in round 0" in d.error
        assert {r.agent for r in d.responses if r.parse_status is ParseStatus.VALID} <= {"verifier-175b",
                                                                                          "finetuned-175b"}


def test_the_key_never_reaches_the_graph_or_the_logs(store: GraphStore, start_panel, gsm8k: dict[str, Path],  # noqa: ANN001
                                                     monkeypatch, caplog) -> None:  # noqa: ANN001
    secret = "sk-test-4f9c2e71d0b8a6355e21"
    monkeypatch.setenv("TEST_PANEL_KEY", secret)
    panel_srv = start_panel(latency_s=0.01, error_rate=0.2)
    panel = parse_panel(panel_dict(panel_srv.base_url, api_key_env="TEST_PANEL_KEY"))
    spec = build_spec(name="secret", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=600, limit=3, panel=panel, protocol=ProtocolConfig(max_rounds=1))
    prepared = prepare(spec)
    assert prepared.keys["verifier-175b"] == secret, "a local endpoint uses the key when it is set"
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=3, lease_s=30)
    caplog.set_level("DEBUG")
    claimed_at = time.monotonic()
    jobs.create(spec, total=3, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepared, store, jobs, worker, settings, claimed_at=claimed_at))
    assert result.status is JobStatus.COMPLETE
    records, _, _ = store.driver.execute_query(
        "MATCH (n) WHERE any(k IN keys(n) WHERE any(v IN CASE WHEN valueType(n[k]) STARTS WITH 'LIST' "
        "THEN n[k] ELSE [n[k]] END WHERE toString(v) CONTAINS $s)) RETURN count(n) AS n", s=secret)
    assert records[0]["n"] == 0
    assert "TEST_PANEL_KEY" in jobs.get(spec.id).spec.model_dump_json(), "only the variable's name is stored"
    assert caplog.records and secret not in caplog.text


def test_an_api_style_spec_with_inline_questions_runs(store: GraphStore, start_panel, gsm8k: dict[str, Path]) -> None:  # noqa: ANN001
    """The shape services/api queues for POST /v1/debates: inline questions, seats on a declared endpoint,
    bound by the worker to ITS declaration of that endpoint."""
    from magdi.datasets import load_questions
    from magdi.mag import JobSpec
    from magdi.policy import Endpoint, OperatorPolicy, Who

    panel_srv = start_panel(latency_s=0.01)
    questions = load_questions(gsm8k["test"], "gsm8k", offset=700, limit=2)
    panel = {"name": "api", "agents": [{"name": "a", "endpoint": "sim", "model": "175b_verification"},
                                       {"name": "b", "endpoint": "sim", "model": "6b_verification"}]}
    spec = JobSpec(name="inline", dataset="gsm8k", questions=questions, panel=panel,
                   protocol={"name": "reconcile", "max_rounds": 2, "topology": "a->b,b->a", "reask": True})
    policy = OperatorPolicy(endpoints=[Endpoint(name="sim", models=["175b_verification", "6b_verification"],
                                                **endpoint_defaults(panel_srv.base_url))], egress_allow=["127.0.0.1"])
    prepared = prepare(spec, policy=policy, who=Who.WORKER)
    policy.check_egress(prepared.panel)
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=2, lease_s=30)
    claimed_at = time.monotonic()
    jobs.create(spec, total=2, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepared, store, jobs, worker, settings, claimed_at=claimed_at))
    assert result.status is JobStatus.COMPLETE
    debates = [store.get_debate(i) for i in store.debate_ids(DebateFilter(job_id=spec.id))]
    assert sorted(d.question.qid for d in debates) == sorted(q.qid for q in questions)
    for d in debates:
        assert all(e.source_agent != e.target_agent for e in d.edges), "explicit topology: no self edges"
        assert {a.endpoint for a in d.panel} == {"sim"}, "the graph names the declared endpoint, not its URL"


def test_the_cost_cap_stops_the_job_before_it_is_passed(store: GraphStore, start_panel,  # noqa: ANN001
                                                        gsm8k: dict[str, Path]) -> None:
    """MAGDI_JOB_MAX_COST_USD: no call starts that could take the job past the cap; the job is marked."""
    panel_srv = start_panel(latency_s=0.01)
    panel = parse_panel(panel_dict(panel_srv.base_url, max_tokens=512))
    spec = build_spec(name="capped", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=40, limit=12, panel=panel, protocol=ProtocolConfig(max_rounds=2))
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=4, lease_s=30)
    cap = 0.02
    claimed_at = time.monotonic()
    jobs.create(spec, total=12, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=claimed_at,
                                 max_cost_usd=cap))
    job = jobs.get(spec.id)
    assert result.status is JobStatus.FAILED and job.status is JobStatus.FAILED
    assert job.errors[0].startswith("cost cap reached"), job.errors
    assert 0 < job.cost_usd <= cap, job.cost_usd
    assert 0 < job.done < 12, "it ran until the cap, then stopped"
    # a second run of the job spends nothing more: what is stored already counts against the cap
    calls_before = sum(p["count"] for p in panel_srv.stats()["by_prompt"])
    jobs.claim(worker, settings.lease_s, job_id=spec.id, any_status=True)
    again = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=time.monotonic(),
                                max_cost_usd=job.cost_usd + 0.001))
    assert again.status is JobStatus.FAILED and jobs.get(spec.id).cost_usd <= job.cost_usd + 0.001
    assert sum(p["count"] for p in panel_srv.stats()["by_prompt"]) - calls_before <= 1
