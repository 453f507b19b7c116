"""Debate-generation throughput: our async engine vs a plain sequential loop, same endpoints.

    .venv/bin/python benchmarks/generator.py                 # about 2 minutes, loopback only
    .venv/bin/python benchmarks/generator.py --quick         # about 1 minute
    .venv/bin/python benchmarks/generator.py --store neo4j   # also write every turn to Neo4j
                                                             # (MAGDI_NEO4J_URI or `magdi db start`)

Both runs talk over HTTP to the same SIMULATED teacher panel (three recorded GSM8K models, see
services/generator/teachers) with a FIXED latency per call and a per-model RPM quota, using the
same ReConcile prompts, so each debate makes the same calls in both runs:

- baseline: ReConcile's shape, one call at a time (questions, then rounds, then agents);
- ours: `services.generator.engine.Engine`, many debates in flight, per-endpoint token buckets.

The bound the quotas allow is sum(rpm_m) / 60 calls/s (every debate calls each model equally
often), i.e. that divided by calls-per-debate in debates/s (a short run can land slightly above
1.0: the first second's burst is allowed by a per-minute quota). Targets: ours >= 10x the
baseline and >= 0.9 of the bound. Reads data/gsm8k (the replayed outputs and questions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai

from magdi.answers import AnswerParseError
from magdi.datasets import load_questions
from magdi.mag import Agent, Debate, ParseStatus, Question, Response
from magdi.panel import PanelConfig, parse_panel, resolve_keys
from services.generator.client import Endpoints
from services.generator.engine import Engine
from services.generator.protocols import ProtocolConfig, build_protocol, parse_turn
from services.generator.sinks import DebateSink, GraphSink, MemorySink
from services.generator.teachers.config import PanelSimConfig
from services.generator.teachers.runner import TeacherPanelServer

REPO = Path(__file__).resolve().parents[1]


DATA = REPO / "data" / "gsm8k"
MODELS = ("175b_verification", "175b_finetuning", "6b_verification")


@dataclass
class Run:
    name: str
    debates: int
    calls: int
    seconds: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def debates_per_s(self) -> float:
        return self.debates / self.seconds

    @property
    def calls_per_debate(self) -> float:
        return self.calls / self.debates


def make_panel(base_url: str, rpm: int) -> PanelConfig:
    return parse_panel({"name": "bench", "defaults": {"base_url": base_url, "api_key_env": None, "timeout_s": 30,
                                                      "limits": {"rpm": rpm, "max_in_flight": 64}},
                        "agents": [{"name": f"agent{i}", "model": m} for i, m in enumerate(MODELS)]})


def sequential(panel: PanelConfig, protocol_cfg: ProtocolConfig, questions: list[Question]) -> Run:
    """ReConcile's loop: every call waits for the previous one (same prompts as the engine)."""
    protocol = build_protocol(protocol_cfg, {a.name: a.name for a in panel.agents})
    client = openai.OpenAI(base_url=panel.agents[0].base_url, api_key="EMPTY", max_retries=5, timeout=30)
    calls, start = 0, time.monotonic()
    for q in questions:
        debate = Debate(question=q, panel=[Agent(name=a.name, model=a.model) for a in panel.agents])
        while (rnd := protocol.next_round(debate)) is not None:
            for req in protocol.turns(debate, rnd):
                model = panel.agent(req.agent).model
                out = client.chat.completions.create(model=model, messages=req.messages,  # type: ignore[arg-type]
                                                     max_tokens=1024)
                calls += 1
                text = out.choices[0].message.content or ""
                try:
                    p = parse_turn(text, q)
                    r = Response(agent=req.agent, round=rnd, answer=p.answer, reasoning=p.reasoning,
                                 confidence=p.confidence)
                except AnswerParseError:
                    r = Response(agent=req.agent, round=rnd, parse_status=ParseStatus.INVALID, raw_text=text)
                debate = debate.model_copy(update={"responses": [*debate.responses, r],
                                                   "edges": [*debate.edges, *req.edges()]})
    client.close()
    return Run("sequential loop", len(questions), calls, time.monotonic() - start)


async def engine_run(panel: PanelConfig, protocol_cfg: ProtocolConfig, questions: list[Question],
                     sink: DebateSink, concurrency: int, job_id: str) -> Run:
    endpoints = Endpoints(panel, resolve_keys(panel))
    protocol = build_protocol(protocol_cfg, {a.name: a.name for a in panel.agents})
    engine = Engine(panel, protocol, endpoints, sink, job_id=job_id, concurrency=concurrency)
    start = time.monotonic()
    progress = await engine.run(questions)
    seconds = time.monotonic() - start
    await endpoints.aclose()
    assert progress.done + progress.failed == len(questions), progress
    return Run("async engine", progress.done + progress.failed, progress.calls, seconds)


@contextlib.contextmanager
def open_sink(kind: str, job_id: str) -> Iterator[DebateSink]:
    """The sink for the engine run; with Neo4j, the benchmark's debates are deleted afterwards."""
    if kind == "memory":
        yield MemorySink()
        return
    import os
    import tempfile
    from pathlib import Path

    from magdi.settings import Neo4jSettings
    from magdi.store.graph_store import DebateFilter
    from magdi.store.open import open_store
    from magdi.store.server import ManagedNeo4j

    with contextlib.ExitStack() as stack:
        settings = None
        if not os.environ.get("MAGDI_NEO4J_URI"):  # a throwaway server, stopped by pid at the end
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="magdi-bench-")))
            info = stack.enter_context(ManagedNeo4j(home, auth=False))
            settings = Neo4jSettings(neo4j_uri=info.uri)
        store = stack.enter_context(open_store(settings))
        try:
            yield GraphSink(store)
        finally:
            for debate_id in store.debate_ids(DebateFilter(job_id=job_id)):
                store.delete_debate(debate_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="fixed seconds per simulated call")
    parser.add_argument("--rpm", type=int, default=1200, help="quota per model (simulated server and client)")
    parser.add_argument("--questions", type=int, default=300, help="debates for the engine run")
    parser.add_argument("--baseline-questions", type=int, default=12, help="debates for the sequential run")
    parser.add_argument("--concurrency", type=int, default=64, help="debates in flight (engine)")
    parser.add_argument("--store", choices=["memory", "neo4j"], default="memory", help="where turns are written")
    parser.add_argument("--quick", action="store_true", help="fewer debates (about half the time)")
    args = parser.parse_args()
    if args.quick:
        args.questions, args.baseline_questions = args.questions // 2, max(args.baseline_questions // 2, 4)
    logging.basicConfig(level=logging.WARNING)
    if not (DATA / "model_solutions.jsonl").exists():
        print(f"needs {DATA} (model_solutions.jsonl and test.jsonl)")
        return 2
    questions = load_questions(DATA / "test.jsonl", "gsm8k", limit=args.questions + args.baseline_questions)
    baseline_qs, engine_qs = questions[: args.baseline_questions], questions[args.baseline_questions:]
    sim = PanelSimConfig(solutions_path=DATA / "model_solutions.jsonl", questions_path=DATA / "test.jsonl",
                         models=list(MODELS), latency_s=args.latency, rpm_limit=args.rpm)
    protocol_cfg = ProtocolConfig(max_rounds=3)
    with TeacherPanelServer(sim) as server:
        panel = make_panel(server.base_url, args.rpm)
        base = sequential(panel, protocol_cfg, baseline_qs)
        openai.OpenAI(base_url=server.base_url, api_key="EMPTY").post("/_sim/reset", cast_to=object, body={})
        job_id = f"job-bench-{time.time_ns()}"
        with open_sink(args.store, job_id) as sink:
            ours = asyncio.run(engine_run(panel, protocol_cfg, engine_qs, sink, args.concurrency, job_id))
        stats = openai.OpenAI(base_url=server.base_url, api_key="EMPTY").get("/_sim/stats", cast_to=object)
    bound_calls = len(MODELS) * args.rpm / 60
    bound_debates = bound_calls / ours.calls_per_debate
    ratio = ours.calls_per_s / base.calls_per_s
    fraction = ours.calls_per_s / bound_calls
    print(f"simulated endpoints: {len(MODELS)} models, latency {args.latency:.2f} s/call, quota {args.rpm} rpm "
          f"per model, store: {args.store}")
    print(f"{'run':<16} {'debates':>8} {'calls':>7} {'seconds':>8} {'debates/s':>10} {'calls/s':>8} {'calls/debate':>13}")
    for r in (base, ours):
        print(f"{r.name:<16} {r.debates:>8} {r.calls:>7} {r.seconds:>8.1f} {r.debates_per_s:>10.3f} "
              f"{r.calls_per_s:>8.2f} {r.calls_per_debate:>13.2f}")
    print(f"bound from quotas: {bound_calls:.1f} calls/s = {bound_debates:.3f} debates/s at "
          f"{ours.calls_per_debate:.2f} calls/debate")
    print(f"speed-up (calls/s): {ratio:.1f}x   (debates/s: {ours.debates_per_s / base.debates_per_s:.1f}x)")
    print(f"fraction of the bound: {fraction:.3f}")
    print(f"429s from the simulated quota during the engine run: {json.dumps(stats.get('faults', {}))}")
    met = ratio >= 10 and fraction >= 0.9
    print(f"targets (>= 10x, >= 0.9 of bound): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
