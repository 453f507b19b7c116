"""The async debate engine: many debates in flight, every finished turn written as it completes.

Each debate runs round by round (a round's calls go out together; the next round needs them
all). Before calling, the engine reads the debate back from the sink: turns already stored,
valid or invalid, are reused and never requested again, so a resumed job continues exactly
where it stopped. A turn whose endpoint gives up is stored as ABSENT with the error, and that
agent sits out the rest of the debate; the debate still finishes with the others.

HOW a completion is obtained is the engine's one pluggable part (`Calls`): `DirectCalls` makes a
chat completion per call (the synchronous path); `services.generator.batching.BatchCalls` collects
the calls of every debate and sends them as Batch API jobs once no debate can go on without them.
Everything else (prompts, parsing, the re-ask, invalid/absent rules, edges, labels, tokens, cost,
the writes) is this module's, the same code for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol as Interface

from magdi.answers import AnswerParseError, is_equivalent, recalibrate_confidence
from magdi.mag import Debate, DebateStatus, Output, ParseStatus, Question, Response
from magdi.panel import AgentConfig, PanelConfig, Price
from magdi.store.batches import BatchRecord
from services.generator.budget import Budget, worst_case_usd
from services.generator.client import CallResult, Endpoints, Message, prompt_hash
from services.generator.protocols import prompts
from services.generator.protocols.base import Protocol, TurnRequest, parse_turn
from services.generator.turn_writers import DebateSink, GroupWriter

logger = logging.getLogger(__name__)


def _output(call: CallResult, reask: str | None = None) -> Output:
    """One completion call as stored on the node (the text verbatim, None if the call failed)."""
    return Output(text=call.text, finish_reason=call.finish_reason, tokens_in=call.tokens_in,
                  tokens_out=call.tokens_out, latency_s=call.latency_s, cost_usd=call.cost_usd,
                  attempts=call.attempts, error=call.error, reask=reask)


class Stopped(Exception):  # noqa: N818 - a control-flow signal, like StopIteration
    """The run was asked to stop (drain or lost lease) before this debate finished."""


@dataclass
class Progress:
    """Live counters for the progress bar and the job report."""

    total: int = 0
    done: int = 0
    failed: int = 0  # debates that ended without a team answer (stored as failed)
    crashed: int = 0  # debates that raised (store errors, bugs): left partial, resumable
    skipped: int = 0  # already complete in the store when the run started
    in_flight: int = 0
    calls: int = 0
    reused: int = 0  # turns read back from the store instead of being requested
    invalid: int = 0
    absent: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # batch mode (services.generator.batching)
    flushes: int = 0  # times the parked calls went out (each: one batch per endpoint and model, or more)
    batches: dict[str, BatchRecord] = field(default_factory=dict)  # every batch this run waited for, by id
    batches_resumed: int = 0  # open batches read back from an earlier run
    batch_requests: int = 0  # lines sent in this run's batches
    batch_lines_done: int = 0  # lines answered (HTTP 200) in the batches this run collected
    batch_retries: int = 0  # failed lines sent again in a later batch

    def note(self, message: str, cap: int = 50) -> None:
        if len(self.errors) < cap:
            self.errors.append(message)


WriteGate = Callable[[], None]  # raises Stopped to refuse a write (lease lost)


class Activity:
    """How many units of debate work can go on by themselves (a debate task, or one turn of a round).

    A unit waiting for a batch result is not counted. Batch mode sends its collected calls when this
    drops to zero: then every debate in flight waits for a result, so no further call of this round
    will come. Counting is exact because hand-overs are atomic: a round's turns take over their
    debate's unit, the last turn to finish hands it back, and a resolved batch call counts its waiter
    in before the waiter runs.
    """

    def __init__(self) -> None:
        self.busy = 0
        self.on_idle: Callable[[], None] | None = None

    def enter(self, n: int = 1) -> None:
        self.busy += n

    def leave(self, n: int = 1) -> None:
        self.busy -= n
        if self.busy == 0 and self.on_idle is not None:
            self.on_idle()

    @contextlib.asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Not counted while inside (e.g. waiting for the cost cap's reservations to settle)."""
        self.leave()
        try:
            yield
        finally:
            self.enter()


class Calls(Interface):
    """Where completions come from: the synchronous endpoints or a batch collector."""

    activity: Activity

    def price(self, agent: AgentConfig) -> Price:
        """What a call of this agent costs this way (the batch price in batch mode)."""
        ...

    async def complete(self, agent: AgentConfig, messages: list[Message], key: str) -> CallResult:
        """One completion, retries included; `key` names the call within the job (`<response id>#a` for
        the ask, `#r` for the re-ask), the same in every run of the job. Never raises for endpoint trouble."""
        ...

    def stored(self, key: str) -> None:
        """The turn `key` (a response id) is stored: what was kept for it may go."""
        ...


class DirectCalls:
    """The synchronous path: a chat completion per call, through the endpoint's limiter, breaker and retries."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.activity = Activity()

    def price(self, agent: AgentConfig) -> Price:
        return agent.price

    async def complete(self, agent: AgentConfig, messages: list[Message], key: str) -> CallResult:
        return await self.endpoints.by_agent[agent.name].complete(agent, messages)

    def stored(self, key: str) -> None:
        pass


@dataclass
class _Live:
    """The in-memory state of one running debate; the lock orders its writes."""

    debate: Debate
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Engine:
    """Runs the debates of one job against one panel with one protocol."""

    def __init__(self, panel: PanelConfig, protocol: Protocol, endpoints: Endpoints, sink: DebateSink, *,
                 job_id: str, config_hash: str | None = None, concurrency: int = 16,
                 gate: WriteGate | None = None, progress: Progress | None = None,
                 writer: GroupWriter | None = None, budget: Budget | None = None, calls: Calls | None = None,
                 draining: asyncio.Event | None = None) -> None:
        """`endpoints` make the calls unless `calls` does (batch mode); `draining`, once set, finishes the
        turns in flight and starts nothing new (a caller that must know before the engine exists passes it)."""
        self.panel = panel
        self.protocol = protocol
        self.calls: Calls = calls or DirectCalls(endpoints)
        self.sink = sink
        self.writer = writer or GroupWriter(sink)
        self._stored: set[str] | None = None  # debate ids of this job already in the store (None: unknown)
        self._complete: set[str] = set()
        if not job_id:  # a generated debate is named by its job: without one its id would change every turn
            raise ValueError("the engine needs a job id")
        self.job_id = job_id
        self.config_hash = config_hash
        self.concurrency = max(1, concurrency)
        self.gate = gate or (lambda: None)
        self.progress = progress or Progress()
        self.draining = draining or asyncio.Event()
        self.budget = budget  # the job's cost cap; exhausted = drained because the next call could pass it

    # -- job level ---------------------------------------------------------------------------
    async def run(self, questions: Sequence[Question], *, known: tuple[set[str], set[str]] | None = None) -> Progress:
        """All debates, `concurrency` at a time; returns when each is finished or stopped.

        `known`: the sink's `known(job_id)` if the caller has just read it (else it is read here).
        """
        self.progress.total = len(questions)
        # one query instead of one read per debate
        self._stored, self._complete = known if known is not None else await asyncio.to_thread(
            self.sink.known, self.job_id)
        queue: asyncio.Queue[Question] = asyncio.Queue()
        for q in questions:
            queue.put_nowait(q)

        async def worker() -> None:
            while not self.draining.is_set():
                try:
                    q = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._debate_task(q)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(questions)) or 1)))
        finally:
            await self.writer.aclose()
        return self.progress

    async def _debate_task(self, question: Question) -> None:
        self.progress.in_flight += 1
        self.calls.activity.enter()
        try:
            debate = await self.run_debate(question)
            if debate is None:
                self.progress.skipped += 1
            elif debate.status is DebateStatus.COMPLETE:
                self.progress.done += 1
            else:
                self.progress.failed += 1
                self.progress.note(f"{question.dataset}/{question.qid}: {debate.error}")
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - one broken debate must not sink the job
            logger.exception("debate on %s/%s crashed", question.dataset, question.qid)
            self.progress.crashed += 1
            self.progress.note(f"{question.dataset}/{question.qid}: {type(exc).__name__}: {exc}")
        finally:
            self.progress.in_flight -= 1
            self.calls.activity.leave()

    # -- one debate --------------------------------------------------------------------------
    def new_debate(self, question: Question) -> Debate:
        return Debate(question=question, job_id=self.job_id, protocol=self.protocol.name,
                      panel=[a.as_agent() for a in self.panel.agents], config_hash=self.config_hash,
                      status=DebateStatus.RUNNING)

    async def run_debate(self, question: Question) -> Debate | None:
        """Run (or continue) one debate; None if it was already complete in the store."""
        fresh = self.new_debate(question)
        if fresh.id in self._complete:
            return None
        stored = None
        if self._stored is None or fresh.id in self._stored:
            stored = await asyncio.to_thread(self.sink.load, fresh.id)
        if stored is not None and stored.status is DebateStatus.COMPLETE:
            return None
        live = _Live(fresh if stored is None else stored.model_copy(update={"status": DebateStatus.RUNNING}))
        for r in live.debate.responses:  # stored by an earlier run: nothing more is needed for them
            self.calls.stored(live.debate.response_id(r.agent, r.round))
        while (rnd := self.protocol.next_round(live.debate)) is not None:
            if self.draining.is_set():
                raise Stopped
            todo = []
            for req in self.protocol.turns(live.debate, rnd):
                have = live.debate.response(req.agent, rnd)
                if have is None:
                    todo.append(req)
                    continue
                self.progress.reused += 1
                if have.prompt_hash and have.prompt_hash != prompt_hash(req.messages):
                    logger.warning("debate %s: stored turn %s/%d came from a different prompt; keeping it",
                                   live.debate.id, req.agent, rnd)
            for res in await self._round(live, todo):
                if isinstance(res, BaseException):
                    raise res
        return await self._finish(live)

    async def _round(self, live: _Live, todo: list[TurnRequest]) -> list[BaseException | None]:
        """Every turn of the round, awaited (and written) even if one of them fails.

        The turns take over the debate's unit of activity; the last one to end hands it back.
        """
        if not todo:
            return []
        activity = self.calls.activity
        activity.enter(len(todo) - 1)
        left = len(todo)

        async def turn(req: TurnRequest) -> None:
            nonlocal left
            try:
                await self._turn(live, req)
            finally:
                left -= 1
                if left:
                    activity.leave()

        return await asyncio.gather(*(turn(req) for req in todo), return_exceptions=True)

    async def _turn(self, live: _Live, req: TurnRequest) -> None:
        key = live.debate.response_id(req.agent, req.round)
        response = await self.call(live.debate.question, req, key)
        edges = req.edges() if response.parse_status is not ParseStatus.ABSENT else []
        async with live.lock:  # snapshots of one debate are made and queued in order: each a superset
            data = live.debate.model_dump()
            data["responses"].append(response.model_dump())
            data["edges"].extend(e.model_dump() for e in edges)
            updated = Debate.model_validate(data)  # re-runs the MAG consistency checks
            self.gate()
            committed = self.writer.submit(updated)
            live.debate = updated
        await committed  # durable before the turn counts as done; a failed write fails the debate
        self.calls.stored(key)

    async def _finish(self, live: _Live) -> Debate:
        debate = live.debate
        out = self.protocol.outcome(debate)
        final = debate.model_copy(update={
            "status": DebateStatus.COMPLETE if out.team_answer is not None else DebateStatus.FAILED,
            "team_answer": out.team_answer, "majority_answer": out.majority_answer,
            "consensus": out.consensus, "team_correct": out.team_correct,
            "rounds_used": out.rounds_used, "error": out.error,
        })
        async with live.lock:
            self.gate()
            committed = self.writer.submit(final)
            live.debate = final
        await committed
        return final

    # -- one turn ----------------------------------------------------------------------------
    async def call(self, question: Question, req: TurnRequest, key: str) -> Response:
        """Make the call (plus at most one re-ask) and turn the reply into a MAG node.

        The node keeps the prompt as sent and every completion call's output in order, so a
        re-asked turn still shows the reply that could not be parsed. `key` names the turn (its
        response id) for `Calls`.
        """
        agent = self.panel.agent(req.agent)
        base = {"agent": req.agent, "round": req.round, "model": agent.model,
                "prompt_hash": prompt_hash(req.messages), "prompt": req.messages}
        result = await self._paid_call(agent, req.messages, f"{key}#a")
        if result is None:  # the cost cap: this turn is not made, the debate stays partial
            raise Stopped
        outputs = [_output(result)]
        if result.text is None:
            self._account(result, ParseStatus.ABSENT)
            self.progress.note(f"{req.agent} round {req.round} on {question.dataset}/{question.qid}: {result.error}")
            return Response(parse_status=ParseStatus.ABSENT, parse_error=result.error, attempts=result.attempts,
                            outputs=outputs, **base)
        error = None
        try:
            parsed = parse_turn(result.text, question)
        except AnswerParseError as exc:
            error = str(exc)
            if self.protocol.config.reask:  # also while draining: finishing a turn includes its re-ask
                reask = prompts.reask(error, self.protocol.asks_confidence)
                retry = [*req.messages, {"role": "assistant", "content": result.text},
                         {"role": "user", "content": reask}]
                second = await self._paid_call(agent, retry, f"{key}#r")
                if second is None:
                    error = f"{error}; no re-ask: the job's cost cap was reached"
                else:
                    outputs.append(_output(second, reask=reask))
                    if second.text is None:
                        result.attempts += second.attempts
                        error = f"{error}; the re-ask failed: {second.error}"
                    else:
                        result = result.merge(second)
                        try:
                            parsed = parse_turn(result.text or "", question)
                            error = None
                        except AnswerParseError as exc2:
                            error = f"{error}; after one re-ask: {exc2}"
        usage = {"tokens_in": result.tokens_in, "tokens_out": result.tokens_out, "latency_s": result.latency_s,
                 "cost_usd": result.cost_usd, "finish_reason": result.finish_reason, "attempts": result.attempts,
                 "raw_text": result.text, "outputs": outputs}
        if error is not None:
            self._account(result, ParseStatus.INVALID)
            return Response(parse_status=ParseStatus.INVALID, parse_error=error, **base, **usage)
        self._account(result, ParseStatus.VALID)
        conf = parsed.confidence if self.protocol.asks_confidence else None
        gold = question.gold_answer
        return Response(
            parse_status=ParseStatus.VALID, reasoning=parsed.reasoning, answer=parsed.answer, confidence=conf,
            recalibrated_confidence=recalibrate_confidence(conf) if conf is not None else None,
            correct=is_equivalent(parsed.answer, gold, question.task, question.options) if gold is not None else None,
            **base, **usage,
        )

    async def _paid_call(self, agent: AgentConfig, messages: list[Message], key: str) -> CallResult | None:
        """One call within the job's cost cap; None (and the run drains) when it could pass the cap."""
        if self.budget is None:
            return await self.calls.complete(agent, messages, key)
        worst = worst_case_usd(agent, messages, self.calls.price(agent))
        async with self.calls.activity.waiting():  # a batch may have to go out before reservations settle
            reserved = await self.budget.reserve(worst)
        if not reserved:
            if not self.draining.is_set():
                logger.warning("job %s: %s; draining", self.job_id, self.budget.describe())
            self.draining.set()
            return None
        result: CallResult | None = None
        try:
            result = await self.calls.complete(agent, messages, key)
        finally:
            # answered: what usage says (the worst case without usage); failed: nothing; cancelled: the worst case
            actual = None if result is None else result.cost_usd if result.text is not None else 0.0
            self.budget.settle(worst, actual)
        return result

    def _account(self, result: CallResult, status: ParseStatus) -> None:
        p = self.progress
        p.calls += result.attempts
        p.tokens_in += result.tokens_in or 0
        p.tokens_out += result.tokens_out or 0
        p.cost_usd += result.cost_usd or 0.0
        if status is ParseStatus.INVALID:
            p.invalid += 1
        elif status is ParseStatus.ABSENT:
            p.absent += 1
