"""Debate-generation throughput: our async engine vs two baselines, on the same endpoints.

    .venv/bin/python benchmarks/generator.py                    # about 2 minutes, loopback only
    .venv/bin/python benchmarks/generator.py --quick            # about 1 minute
    .venv/bin/python benchmarks/generator.py --rate-window 1    # quotas enforced per second
    .venv/bin/python benchmarks/generator.py --store neo4j      # also write every turn to Neo4j
    .venv/bin/python benchmarks/generator.py --batch-turnaround 60  # a slower Batch API
                                                                # (MAGDI_NEO4J_URI or a throwaway server)

All runs talk over HTTP to the same SIMULATED teacher panel (three recorded GSM8K models, see
services/teachers) with a FIXED latency per call and a per-model RPM quota, using the
same ReConcile prompts, so each debate makes the same calls in every run:

- sequential: ReConcile's shape, one call at a time (questions, then rounds, then agents);
- naive gather: what a careful user writes with asyncio: every debate under `asyncio.gather`, a
  semaphore on calls, no client-side limiter, retry on 429 only (waiting Retry-After);
- ours: `services.generator.engine.Engine`, many debates in flight, per-endpoint token buckets;
- batch mode: the same engine with `--mode batch`'s collector (`services.generator.batching`):
  every round of every debate as one Batch API job per model, on the panel's `/v1/batches`.

The batch figure is requests per hour and cost per 1,000 debates against the synchronous engine
at the same quota. A Batch API has its own pool (batch lines do not count against the RPM quota)
and its own turnaround: the panel answers a batch's lines evenly over `--batch-turnaround`
seconds, so the batch mode's requests per hour here are set by that turnaround and the number of
debates in flight, NOT by the client; at a real provider a round takes up to its window (24 h).
Cost uses OpenAI's published gpt-4o-mini prices (USD per 1M tokens: 0.15 in / 0.60 out, Batch
API 0.075 / 0.30) on the tokens the panel reported for each run's own debates.

Calls are the completions the panel served each run (its counters are reset, quota windows
included, before each run), so 429s are not counted as work; the 429s are printed beside. The
bound the quotas allow is sum(rpm_m) / 60 calls/s. A per-minute quota admits a whole minute's
requests at once, so a run shorter than a minute can land above it; `--rate-window 1` enforces
the quota per second instead, as providers that quantize their limits do. Targets: ours >= 10x
the sequential loop and >= 0.9 of the bound. Reads data/gsm8k (the replayed outputs and questions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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
from services.generator.batch_api import PollPolicy
from services.generator.batching import BatchCalls, api_backends
from services.generator.client import Endpoints
from services.generator.engine import Engine
from services.generator.protocols import ProtocolConfig, TurnRequest, build_protocol, parse_turn
from services.generator.turn_writers import DebateSink, GraphSink, MemorySink
from services.teachers.config import PanelSimConfig
from services.teachers.runner import TeacherPanelServer

REPO = Path(__file__).resolve().parents[1]


DATA = REPO / "data" / "gsm8k"
MODELS = ("175b_verification", "175b_finetuning", "6b_verification")


@dataclass
class Run:
    name: str
    debates: int
    calls: int
    seconds: float
    cost_usd: float | None = None  # the run's debates at the price in `make_panel`, where recorded

    @property
    def cost_per_1k_debates(self) -> float | None:
        return None if self.cost_usd is None else self.cost_usd / self.debates * 1000

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def debates_per_s(self) -> float:
        return self.debates / self.seconds

    @property
    def calls_per_debate(self) -> float:
        return self.calls / self.debates


# OpenAI's published gpt-4o-mini prices (USD per 1k tokens), synchronous and Batch API (half)
PRICE = {"input_per_1k": 0.00015, "output_per_1k": 0.0006, "batch_input_per_1k": 0.000075,
         "batch_output_per_1k": 0.0003}


def make_panel(base_url: str, rpm: int, window_s: float = 60.0) -> PanelConfig:
    limits = {"rpm": rpm, "max_in_flight": 64, "window_s": window_s}
    return parse_panel({"name": "bench", "defaults": {"base_url": base_url, "api_key_env": None, "timeout_s": 30,
                                                      "limits": limits, "price": PRICE},
                        "agents": [{"name": f"agent{i}", "model": m} for i, m in enumerate(MODELS)]})


def add_turn(debate: Debate, req: TurnRequest, rnd: int, text: str) -> Debate:
    """The debate with one more turn, parsed as the engine parses it (same prompts next round)."""
    try:
        p = parse_turn(text, debate.question)
        r = Response(agent=req.agent, round=rnd, answer=p.answer, reasoning=p.reasoning, confidence=p.confidence)
    except AnswerParseError:
        r = Response(agent=req.agent, round=rnd, parse_status=ParseStatus.INVALID, raw_text=text)
    return debate.model_copy(update={"responses": [*debate.responses, r], "edges": [*debate.edges, *req.edges()]})


def new_debate(panel: PanelConfig, q: Question) -> Debate:
    return Debate(question=q, panel=[Agent(name=a.name, model=a.model) for a in panel.agents])


def sequential(panel: PanelConfig, protocol_cfg: ProtocolConfig, questions: list[Question]) -> Run:
    """ReConcile's loop: every call waits for the previous one (same prompts as the engine)."""
    protocol = build_protocol(protocol_cfg, {a.name: a.name for a in panel.agents})
    client = openai.OpenAI(base_url=panel.agents[0].base_url, api_key="EMPTY", max_retries=5, timeout=30)
    start = time.monotonic()
    for q in questions:
        debate = new_debate(panel, q)
        while (rnd := protocol.next_round(debate)) is not None:
            for req in protocol.turns(debate, rnd):
                model = panel.agent(req.agent).model
                out = client.chat.completions.create(model=model, messages=req.messages,  # type: ignore[arg-type]
                                                     max_tokens=1024)
                debate = add_turn(debate, req, rnd, out.choices[0].message.content or "")
    client.close()
    return Run("sequential loop", len(questions), 0, time.monotonic() - start)


async def naive_gather(panel: PanelConfig, protocol_cfg: ProtocolConfig, questions: list[Question],
                       concurrency: int) -> Run:
    """What a careful user writes without our engine: all debates under `asyncio.gather`, a semaphore
    of `concurrency` calls, no client-side limiter, and a retry on 429 only that waits Retry-After."""
    protocol = build_protocol(protocol_cfg, {a.name: a.name for a in panel.agents})
    client = openai.AsyncOpenAI(base_url=panel.agents[0].base_url, api_key="EMPTY", max_retries=0, timeout=30)
    slots = asyncio.Semaphore(concurrency)

    async def call(model: str, messages: list[dict[str, str]]) -> str:
        while True:
            async with slots:
                try:
                    out = await client.chat.completions.create(model=model, messages=messages,  # type: ignore[arg-type]
                                                               max_tokens=1024)
                    return out.choices[0].message.content or ""
                except openai.RateLimitError as exc:
                    delay = float(exc.response.headers.get("retry-after", "1"))
            await asyncio.sleep(delay)

    async def run_debate(q: Question) -> None:
        debate = new_debate(panel, q)
        while (rnd := protocol.next_round(debate)) is not None:
            requests = protocol.turns(debate, rnd)
            texts = await asyncio.gather(*(call(panel.agent(r.agent).model, r.messages) for r in requests))
            for req, text in zip(requests, texts, strict=True):
                debate = add_turn(debate, req, rnd, text)

    start = time.monotonic()
    await asyncio.gather(*(run_debate(q) for q in questions))
    seconds = time.monotonic() - start
    await client.close()
    return Run("naive gather", len(questions), 0, seconds)


async def engine_run(panel: PanelConfig, protocol_cfg: ProtocolConfig, questions: list[Question],
                     sink: DebateSink, concurrency: int, job_id: str, name: str = "async engine", *,
                     batch: bool = False) -> Run:
    """The engine as `magdi generate` runs it; `batch`: in batch mode, every debate in flight and each
    round one batch per model (`--mode batch` without the Neo4j batch records: nothing resumes here)."""
    endpoints = Endpoints(panel, resolve_keys(panel))
    protocol = build_protocol(protocol_cfg, {a.name: a.name for a in panel.agents})
    calls = None
    if batch:
        policy = PollPolicy(initial_s=0.2, max_s=1.0, timeout_s=3600)
        calls = BatchCalls(job_id, api_backends(panel, endpoints, policy, job_id))
        concurrency = len(questions)
    engine = Engine(panel, protocol, endpoints, sink, job_id=job_id, concurrency=concurrency, calls=calls,
                    progress=calls.progress if calls else None)
    start = time.monotonic()
    progress = await engine.run(questions)
    seconds = time.monotonic() - start
    if calls is not None:
        await calls.aclose()
        name = f"batch mode ({progress.flushes} rounds of batches)"
    await endpoints.aclose()
    assert progress.done + progress.failed == len(questions), progress
    return Run(name, progress.done + progress.failed, 0, seconds, progress.cost_usd)


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


def counted(sim: openai.OpenAI, run: Run) -> tuple[Run, int]:
    """`run` with its calls = the completions the panel served it, and its 429 count (then reset)."""
    stats = sim.get("/_sim/stats", cast_to=object)
    sim.post("/_sim/reset", cast_to=object, body={})
    # batch lines are answered by the same replay, so `completions` counts them as well
    return dataclasses.replace(run, calls=stats["completions"]), stats.get("faults", {}).get("rate_limited", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="fixed seconds per simulated call")
    parser.add_argument("--rpm", type=int, default=1200, help="quota per model (simulated server and client)")
    parser.add_argument("--rate-window", type=float, default=None,
                        help="the panel enforces the quota per window of this many seconds (rpm * w / 60), as "
                        "providers that quantize per-minute limits do; default: a sliding 60 s window")
    parser.add_argument("--questions", type=int, default=300, help="debates for the engine and gather runs")
    parser.add_argument("--baseline-questions", type=int, default=12, help="debates for the sequential run")
    parser.add_argument("--concurrency", type=int, default=64, help="debates in flight (engine); calls (gather)")
    parser.add_argument("--store", choices=["memory", "neo4j"], default="memory", help="where turns are written")
    parser.add_argument("--batch-turnaround", type=float, default=5.0,
                        help="seconds the panel takes to answer a whole batch (batch mode)")
    parser.add_argument("--quick", action="store_true", help="fewer debates (about half the time)")
    args = parser.parse_args()
    if args.quick:
        args.questions, args.baseline_questions = args.questions // 2, max(args.baseline_questions // 2, 4)
    logging.basicConfig(level=logging.WARNING)
    if not (DATA / "model_solutions.jsonl").exists():
        print(f"needs {DATA} (model_solutions.jsonl and test.jsonl)")
        return 2
    questions = load_questions(DATA / "test.jsonl", "gsm8k", limit=args.questions * 2 + args.baseline_questions)
    baseline_qs = questions[: args.baseline_questions]
    gather_qs = questions[args.baseline_questions : args.baseline_questions + args.questions]
    engine_qs = questions[args.baseline_questions + args.questions :]
    sim_cfg = PanelSimConfig(solutions_path=DATA / "model_solutions.jsonl", questions_path=DATA / "test.jsonl",
                             models=list(MODELS), latency_s=args.latency, rpm_limit=args.rpm,
                             rate_window_s=args.rate_window, batch_completion_s=args.batch_turnaround)
    protocol_cfg = ProtocolConfig(max_rounds=3)
    with TeacherPanelServer(sim_cfg) as server, openai.OpenAI(base_url=server.base_url, api_key="EMPTY") as sim:
        panel = make_panel(server.base_url, args.rpm)
        sim.post("/_sim/reset", cast_to=object, body={})  # counters and quota windows: each run starts empty
        runs = [counted(sim, sequential(panel, protocol_cfg, baseline_qs))]
        runs.append(counted(sim, asyncio.run(naive_gather(panel, protocol_cfg, gather_qs, args.concurrency))))
        job_id = f"job-bench-{time.time_ns()}"
        with open_sink(args.store, job_id) as sink:
            ours = asyncio.run(engine_run(panel, protocol_cfg, engine_qs, sink, args.concurrency, job_id))
        runs.append(counted(sim, ours))
        if args.rate_window:  # the same debates, the engine told the provider's window (Limits.window_s)
            told = make_panel(server.base_url, args.rpm, args.rate_window)
            with open_sink(args.store, f"{job_id}-told") as sink:
                runs.append(counted(sim, asyncio.run(engine_run(
                    told, protocol_cfg, engine_qs, sink, args.concurrency, f"{job_id}-told",
                    name=f"async engine, window_s={args.rate_window:g}"))))
        with open_sink(args.store, f"{job_id}-batch") as sink:  # the same debates as the engine run
            batch = asyncio.run(engine_run(panel, protocol_cfg, engine_qs, sink, args.concurrency,
                                           f"{job_id}-batch", batch=True))
        runs.append(counted(sim, batch))
    base, naive, ours, *told, batch = (r for r, _ in runs)
    bound_calls = len(MODELS) * args.rpm / 60
    window = f"{args.rate_window:g} s windows" if args.rate_window else "a sliding 60 s window"
    print(f"simulated endpoints: {len(MODELS)} models, latency {args.latency:.2f} s/call, quota {args.rpm} rpm "
          f"per model over {window}, store: {args.store}")
    print(f"{'run':<34} {'debates':>8} {'calls':>7} {'seconds':>8} {'debates/s':>10} {'calls/s':>8} "
          f"{'of bound':>9} {'429s':>6} {'USD/1k debates':>15}")
    for r, limited in runs:
        cost = "-" if r.cost_per_1k_debates is None else f"{r.cost_per_1k_debates:.4f}"
        print(f"{r.name:<34} {r.debates:>8} {r.calls:>7} {r.seconds:>8.1f} {r.debates_per_s:>10.3f} "
              f"{r.calls_per_s:>8.2f} {r.calls_per_s / bound_calls:>9.3f} {limited:>6} {cost:>15}")
    print(f"bound from quotas: {bound_calls:.1f} calls/s (calls = completions served, 429s not counted)")
    print(f"engine vs sequential loop: {ours.calls_per_s / base.calls_per_s:.1f}x   "
          f"engine vs naive gather: {ours.calls_per_s / naive.calls_per_s:.2f}x")
    print(f"batch mode vs the engine at the same quota ({args.rpm} rpm per model; batches answered in "
          f"{args.batch_turnaround:g} s each): {batch.calls_per_s * 3600:,.0f} vs {ours.calls_per_s * 3600:,.0f} "
          f"requests/hour ({batch.calls_per_s / ours.calls_per_s:.2f}x); cost per 1,000 debates "
          f"{batch.cost_per_1k_debates:.4f} vs {ours.cost_per_1k_debates:.4f} USD "
          f"({batch.cost_per_1k_debates / ours.cost_per_1k_debates:.2f}x)")
    for t in told:
        print(f"engine told the {args.rate_window:g} s window vs not told: {t.calls_per_s / ours.calls_per_s:.2f}x   "
              f"vs naive gather: {t.calls_per_s / naive.calls_per_s:.2f}x")
        ours = t  # the targets apply to the engine configured as the provider enforces its quota
    fraction = ours.calls_per_s / bound_calls
    met = ours.calls_per_s / base.calls_per_s >= 10 and fraction >= 0.9
    print(f"targets (engine >= 10x the loop, >= 0.9 of bound): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
