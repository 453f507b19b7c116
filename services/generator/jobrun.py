"""One job from spec to finish, shared by `magdi generate` and the queue worker.

Leases are per JOB: one process runs all debates of a job, so the endpoints' quotas are
enforced by one limiter, and a second worker cannot touch the job while the lease holds. The
holder renews every `lease_s / 3` and stops writing on its own once `lease_s - margin` has
passed since the last renewal it sent, which is before anyone else may claim the job. A crashed
holder's lease expires (or, on the same host, a dead pid is taken over at once) and the next
claimant resumes from the stored turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magdi import redact
from magdi.errors import UserError
from magdi.mag import JobSpec, JobStatus
from magdi.retry import Hold, retry_while
from magdi.store.batches import BatchRecord, BatchStore
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from magdi.store.quota import QuotaShares
from services.generator.batch_api import PollPolicy
from services.generator.batching import Backend, BatchCalls, OfflineBackend, Route, api_backends, route
from services.generator.budget import Budget
from services.generator.client import Endpoints
from services.generator.engine import Engine, Progress, Stopped
from services.generator.jobspec import Prepared
from services.generator.protocols import build_protocol
from services.generator.settings import GeneratorSettings
from services.generator.turn_writers import GraphSink, GroupWriter

logger = logging.getLogger(__name__)


class LeaseLost(Stopped):
    """Another worker may own the job now; stop without writing anything more."""


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def owner_is_dead(owner: str | None, me: str) -> bool:
    """True when `owner` is a worker id of a process on THIS host that no longer runs."""
    if not owner or owner == me:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # an earlier incarnation with our pid (a restarted container's pid 1)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseKeeper:
    """Renews the job lease in the background; `check()` and `wait_valid()` gate the engine's writes.

    Writes happen only while the lease is known to be valid. When renewals fail because Neo4j is
    unreachable, the lease's state is unknown, not lost: nobody can claim the job while the database
    is down, so writes are held (`wait_valid`) and renewal is retried for up to `store_outage_s`. The
    first renewal that gets through decides: still ours (the renew query matches this worker as
    owner) and writing resumes, or taken/cancelled and the run stops without another write.

    Renewals run on a thread of their own: in the default executor they would queue behind store
    writes that are blocked in an outage, so the lease would expire unrenewed and unnoticed.
    """

    def __init__(self, jobs: JobStore, job_id: str, worker: str, settings: GeneratorSettings,
                 on_lost: Callable[[], None], claimed_at: float) -> None:
        self.jobs, self.job_id, self.worker = jobs, job_id, worker
        self.lease_s, self.margin_s = settings.lease_s, settings.lease_margin_s
        self.every_s = settings.renew_every_s or settings.lease_s / 3
        self.outage_s = settings.store_outage_s
        self.valid_until = claimed_at + self.lease_s - self.margin_s  # measured from when the claim was sent
        self.lost = False
        self._on_lost = on_lost
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lease-{job_id}")

    def check(self) -> None:
        """Raise once the lease is known to be lost (an expired but unconfirmed lease holds in `wait_valid`)."""
        if self.lost:
            raise LeaseLost(f"lease on {self.job_id} lost")

    async def wait_valid(self) -> bool:
        """Return while the lease is valid (True if it had to wait for a renewal); raise once it is lost.

        The hold is logged here, not only where a renewal fails: a renewal can also outlast the lease
        without failing (the driver retries it inside its own window while Neo4j restarts), and a
        silent hold looks like a hung job.
        """
        since: float | None = None
        while True:
            self.check()
            if time.monotonic() <= self.valid_until:
                if since is not None:
                    logger.warning("job %s: lease confirmed after %.1f s; writing resumes",
                                   self.job_id, time.monotonic() - since)
                return since is not None
            if since is None:
                since = time.monotonic()
                logger.warning("job %s: lease expired before its renewal was confirmed; "
                               "writes are held until it succeeds", self.job_id)
            await asyncio.sleep(0.2)

    def _lose(self, why: str) -> None:
        if not self.lost:
            self.lost = True
            logger.error("job %s: %s; stopping without further writes", self.job_id, why)
            self._on_lost()

    async def run(self) -> None:
        try:
            await self._renew_until_lost()
        finally:
            self._thread.shutdown(wait=False, cancel_futures=True)

    async def _renew_until_lost(self) -> None:
        first = True
        while not self.lost:
            if not first:  # renew at once: setting up the run may have used part of the lease
                await asyncio.sleep(self.every_s)
            first = False
            hold = Hold()  # since the first failed renewal was sent
            try:
                retry_s = min(self.every_s, 2.0)
                ok, sent = await retry_while(functools.partial(self._renew_once, hold), transient=lambda exc: True,
                                             hold=hold, give_up=self._gives_up, delay_s=retry_s, max_delay_s=retry_s)
            except Exception:  # noqa: BLE001 - logged by _renew_once
                self._lose(f"lease could not be renewed for {self.outage_s:.0f} s")
                continue
            if not ok:
                self._lose("the job was cancelled or taken by another worker")
                continue
            if hold.since is not None:
                logger.warning("job %s: lease renewed after %.1f s of failed renewals", self.job_id, hold.held_s)
            self.valid_until = sent + self.lease_s - self.margin_s

    async def _renew_once(self, hold: Hold) -> tuple[bool, float]:
        """One renewal: (still ours, when it was sent). A failure (Neo4j down or restarting) leaves
        the lease unknown, not lost: it is retried while the lease is valid and `store_outage_s` after."""
        sent = time.monotonic()
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._thread, self.jobs.renew, self.job_id, self.worker, self.lease_s)
        except Exception as exc:
            hold.start(sent)
            expired = time.monotonic() > self.valid_until
            logger.warning("job %s: lease renewal failed (%s)%s", self.job_id, exc,
                           "; writes are held until it succeeds" if expired else "; retrying")
            raise
        return ok, sent

    def _gives_up(self, hold: Hold) -> bool:
        return time.monotonic() > self.valid_until and hold.held_s > self.outage_s


@dataclass
class JobResult:
    status: JobStatus | None  # None: the lease was lost, the job was left alone
    progress: Progress
    errors: list[str]
    released: bool = False


async def run_job(prepared: Prepared, store: GraphStore, jobs: JobStore, worker: str,
                  settings: GeneratorSettings, *, claimed_at: float, stop: asyncio.Event | None = None,
                  progress: Progress | None = None, concurrency: int | None = None,
                  max_cost_usd: float | None = None, batch_dir: Path | None = None) -> JobResult:
    """Run a job this worker claimed at monotonic time `claimed_at`; finish, release or abandon it.

    `max_cost_usd` caps the job's whole cost (earlier runs of it included): no call starts that could
    pass it, and the job ends `failed` with "cost cap reached" (`budget.Budget`). A batch-mode job
    (`spec.mode == "batch"`) has every debate in flight unless `concurrency` says otherwise, and an
    offline one writes its batch files to `batch_dir`.
    """
    spec, panel = prepared.spec, prepared.panel
    stop = stop or asyncio.Event()
    progress = progress or Progress()
    redact.install(prepared.keys.values())
    endpoints = Endpoints(panel, prepared.keys)
    protocol = build_protocol(prepared.protocol, {a.name: a.demos_key for a in panel.agents})
    lost = asyncio.Event()
    keeper = LeaseKeeper(jobs, spec.id, worker, settings, on_lost=lost.set, claimed_at=claimed_at)
    sink = GraphSink(store)
    writer = GroupWriter(sink, outage_s=settings.store_outage_s, gate=keeper.wait_valid)
    await asyncio.to_thread(jobs.update, spec.id, total=len(prepared.questions))
    budget = None
    if max_cost_usd is not None:
        so_far = await asyncio.to_thread(jobs.refresh_counters, spec.id)
        budget = Budget(max_cost_usd, spent_usd=so_far.cost_usd if so_far else 0.0)
    draining = asyncio.Event()
    calls: BatchCalls | None = None
    known: tuple[set[str], set[str]] | None = None
    if spec.mode == "batch":
        calls, reopen = await asyncio.to_thread(open_batch_calls, prepared, store, endpoints, settings,
                                                progress, draining.is_set, batch_dir)
        known = await asyncio.to_thread(sink.known, spec.id)  # read once: the engine starts from it too
        await calls.resume(reopen, complete_debates=known[1])
        concurrency = concurrency or max(len(prepared.questions), 1)
    engine = Engine(panel, protocol, endpoints, sink, job_id=spec.id, config_hash=spec.config_hash,
                    concurrency=concurrency or settings.concurrency, gate=keeper.check, progress=progress,
                    writer=writer, budget=budget, calls=calls, draining=draining)
    # a batch job makes no synchronous calls: it takes no share of the endpoints' rate limits
    quota = QuotaSharer(QuotaShares(store), f"{worker}/{spec.id}", endpoints if calls is None else None,
                        settings.lease_s, keeper.every_s)
    await quota.renew()  # before the first call: start at our share, not at the whole quota
    run_task = asyncio.create_task(engine.run(prepared.questions, known=known))
    helpers = [asyncio.create_task(keeper.run()), asyncio.create_task(quota.run()),
               asyncio.create_task(_refresh_counters(jobs, spec.id, settings.counters_every_s))]
    stop_task = asyncio.create_task(stop.wait())
    lost_task = asyncio.create_task(lost.wait())
    try:
        await asyncio.wait({run_task, stop_task, lost_task}, return_when=asyncio.FIRST_COMPLETED)
        if lost.is_set() and not run_task.done():  # someone else may own the job: stop at once
            run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run_task
        elif not run_task.done():
            logger.warning("job %s: stopping; finishing the turns in flight (up to %.0f s)",
                           spec.id, settings.drain_timeout_s)
            engine.draining.set()
            done, _ = await asyncio.wait({run_task}, timeout=settings.drain_timeout_s)
            if not done:
                run_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run_task
        elif run_task.exception() is not None:
            raise run_task.exception()  # type: ignore[misc]
    finally:
        for task in (*helpers, stop_task, lost_task):
            task.cancel()
        await asyncio.gather(*helpers, stop_task, lost_task, return_exceptions=True)
        if calls is not None:
            await calls.aclose()
        await endpoints.aclose()
        await quota.release()
    return await asyncio.to_thread(_conclude, jobs, spec, worker, engine, endpoints, keeper.lost, stop.is_set(), calls)


def open_batch_calls(prepared: Prepared, store: GraphStore, endpoints: Endpoints, settings: GeneratorSettings,
                     progress: Progress, draining: Callable[[], bool], batch_dir: Path | None,
                     ) -> tuple[BatchCalls, list[BatchRecord]]:
    """The batch collector of a batch-mode job and the open batches of its earlier runs (for `BatchCalls.resume`)."""
    spec = prepared.spec
    policy = PollPolicy(initial_s=settings.batch_poll_s, max_s=settings.batch_poll_max_s,
                        timeout_s=settings.batch_timeout_s)
    if spec.offline:
        if batch_dir is None:
            raise UserError(f"job {spec.name} is an offline batch job: give its folder (--batch-dir)")
        offline = OfflineBackend(batch_dir, policy, spec.name, settle_s=settings.batch_settle_s)
        backends: dict[Route, Backend] = {route(a): offline for a in prepared.panel.agents}
    else:
        backends = api_backends(prepared.panel, endpoints, policy, spec.id)
    records = BatchStore(store)
    reopen = records.open_batches(spec.id)
    if reopen:
        logger.info("job %s: %d open batch(es) from an earlier run: %s", spec.id, len(reopen),
                    ", ".join(b.batch_id or b.key for b in reopen))
    calls = BatchCalls(spec.id, backends, records=records, progress=progress, draining=draining,
                       next_seq=records.count(spec.id))
    return calls, reopen


class QuotaSharer:
    """Keeps this run's shares of its endpoints' quotas and sizes the local buckets to them.

    Renewed as often as the job lease (`every_s`); while Neo4j is unreachable the last sizes stay.
    """

    def __init__(self, shares: QuotaShares, holder: str, endpoints: Endpoints | None, lease_s: float,
                 every_s: float) -> None:
        """`endpoints` None: this run makes no synchronous calls and takes no share."""
        self.shares, self.holder, self.lease_s, self.every_s = shares, holder, lease_s, every_s
        self.limited = {e.quota_id: e for e in (endpoints.all() if endpoints else [])
                        if e.limiter.limits.rpm or e.limiter.limits.tpm}
        # A cancelled renewal's thread runs on; the lock and flag keep it from re-creating released shares.
        self._lock = threading.Lock()
        self._released = False

    def _renew_now(self) -> dict[str, int]:
        with self._lock:
            return {} if self._released else self.shares.renew(self.holder, list(self.limited), self.lease_s)

    def _release_now(self) -> None:
        with self._lock:
            self._released = True
            self.shares.release(self.holder)

    async def renew(self) -> None:
        if not self.limited:
            return
        try:
            live = await asyncio.to_thread(self._renew_now)
        except Exception as exc:  # noqa: BLE001 - keep the current sizes; the lease keeper handles outages
            logger.warning("could not renew quota shares (%s); keeping the current ones", exc)
            return
        for quota_id, n in live.items():
            endpoint = self.limited[quota_id]
            if n != endpoint.limiter.shares:
                logger.info("%s: %d process(es) share its quota; this one takes 1/%d", endpoint.name, n, n)
            endpoint.limiter.share(n)

    async def run(self) -> None:
        while self.limited:
            await asyncio.sleep(self.every_s)
            await self.renew()

    async def release(self) -> None:
        if self.limited:
            with contextlib.suppress(Exception):  # they expire by themselves
                await asyncio.to_thread(self._release_now)


async def _refresh_counters(jobs: JobStore, job_id: str, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(jobs.refresh_counters, job_id)
        except Exception as exc:  # noqa: BLE001 - counters are cosmetic; the run goes on
            logger.debug("refresh_counters failed: %s", exc)


def _conclude(jobs: JobStore, spec: JobSpec, worker: str, engine: Engine, endpoints: Endpoints,
              lost: bool, stopped: bool, calls: BatchCalls | None = None) -> JobResult:
    progress = engine.progress
    errors = [f"endpoint {name} was down; its turns are recorded as absent: {err}"
              for name, err in endpoints.down().items()] + progress.errors
    if lost:
        return JobResult(None, progress, errors)
    _add_call_counters(jobs, spec.id, endpoints, engine.writer, calls)
    job = jobs.refresh_counters(spec.id)
    finished = progress.done + progress.failed + progress.skipped
    if stopped and finished + progress.crashed < progress.total:
        released = jobs.release(spec.id, worker)
        logger.warning("job %s: released unfinished (%d/%d debates)", spec.id, finished, progress.total)
        return JobResult(JobStatus.QUEUED, progress, errors, released=released)
    complete = job.done if job else progress.done + progress.skipped
    capped = engine.budget is not None and engine.budget.exhausted
    # failed = resume it: nothing came out, some debates crashed and are still partial, or the cost cap stopped it
    status = JobStatus.FAILED if complete == 0 or progress.crashed or capped else JobStatus.COMPLETE
    if capped:
        assert engine.budget is not None
        errors.insert(0, f"{engine.budget.describe()}; {complete} of {progress.total} debates complete")
    if progress.crashed:
        errors.insert(0, f"{progress.crashed} debate(s) crashed and are incomplete; run the job again (--resume)")
    if not jobs.finish(spec.id, worker, status, errors):
        logger.warning("job %s was cancelled or taken over meanwhile; status left unchanged", spec.id)
        current = jobs.get(spec.id)
        return JobResult(current.status if current else None, progress, errors)
    return JobResult(status, progress, errors)


def _add_call_counters(jobs: JobStore, job_id: str, endpoints: Endpoints, writer: GroupWriter,
                       calls: BatchCalls | None = None) -> None:
    """Add this run's endpoint and store counters to the Job node (summed over runs, for `magdi jobs status`).

    In batch mode a call is a line sent in a batch, a retry a failed line sent again."""
    sent, retried, failed = (calls.lines_sent, calls.lines_retried, calls.lines_failed) if calls else (0, 0, 0)
    totals = {"calls": sum(e.calls for e in endpoints.all()) + sent,
              "retries": sum(e.retries for e in endpoints.all()) + retried,
              "rate_limit_waits": sum(e.rate_limit_waits for e in endpoints.all()),
              "call_failures": sum(e.failures for e in endpoints.all()) + failed,
              "store_outages": writer.outages, "store_held_s": round(writer.held_s, 1)}
    try:
        jobs.add_run_counters(job_id, totals)
    except Exception as exc:  # noqa: BLE001 - counters are informative; finishing the job matters more
        logger.warning("job %s: could not store call counters: %s", job_id, exc)


def describe(result: JobResult) -> dict[str, Any]:
    p = result.progress
    return {"status": result.status.value if result.status else "lease-lost", "debates": p.total,
            "complete": p.done, "failed": p.failed, "crashed": p.crashed, "already_done": p.skipped, "calls": p.calls,
            "reused_turns": p.reused, "invalid_turns": p.invalid, "absent_turns": p.absent,
            "tokens_in": p.tokens_in, "tokens_out": p.tokens_out, "cost_usd": round(p.cost_usd, 6),
            "seconds": round(time.monotonic() - p.started, 1),
            **({"batches": len(p.batches), "batches_resumed": p.batches_resumed, "batch_flushes": p.flushes,
                "batch_requests": p.batch_requests, "batch_lines_done": p.batch_lines_done,
                "batch_retries": p.batch_retries} if p.batches else {}),
            "errors": result.errors[:10]}
