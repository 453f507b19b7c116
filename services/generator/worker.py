"""The queue worker: claim a job -> run it under a renewed lease -> finish -> claim the next.

Several workers may poll the same Neo4j; `JobStore.claim` hands each job to exactly one of
them (see `jobrun` for why leases are per job). SIGTERM/SIGINT: stop claiming, let the turns in
flight finish and be written, give the unfinished job back to the queue, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from magdi.datasets import DatasetError
from magdi.mag import Job, JobSpec, JobStatus
from magdi.policy import Who
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import InvalidJobSpec, JobStore
from services.generator.client import PreflightError, preflight
from services.generator.jobrun import describe, new_worker_id, owner_is_dead, run_job
from services.generator.jobspec import prepare
from services.generator.settings import GeneratorSettings

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, store: GraphStore, settings: GeneratorSettings) -> None:
        self.store = store
        self.jobs = JobStore(store)
        self.settings = settings
        self.worker_id = settings.worker_id or new_worker_id()
        self.stop = asyncio.Event()
        self.failed: list[str] = []  # jobs this worker ran that ended failed: the exit status says so

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.warning("worker %s: %s received; draining", self.worker_id, sig.name)
        self.stop.set()

    async def run(self) -> int:
        """Loop until stopped (or, with `once`, until the queue is empty); returns jobs run."""
        logger.info("worker %s polling for jobs", self.worker_id)
        ran = 0
        while not self.stop.is_set():
            claimed_at = time.monotonic()
            job = await asyncio.to_thread(self._claim)
            if job is None:
                if self.settings.once:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=self.settings.poll_s)
                continue
            ran += 1
            until = job.lease_until.isoformat() if job.lease_until else "?"
            logger.info("worker %s claimed job %s (lease until %s)", self.worker_id, job.id, until)
            await self.run_one(job.id, job.spec, claimed_at)
        logger.info("worker %s stopped after %d job(s)", self.worker_id, ran)
        return ran

    def _claim(self) -> Job | None:
        """A queued or expired job; first, one whose holder is a dead process on this host.

        A job whose stored spec the schema refuses is marked failed by the claim and skipped.
        """
        for _ in range(100):
            try:
                return self._claim_once()
            except InvalidJobSpec as exc:
                logger.error("worker %s: %s; marked failed", self.worker_id, exc)
        return None

    def _claim_once(self) -> Job | None:
        try:
            running_jobs = self.jobs.list(JobStatus.RUNNING)
        except InvalidJobSpec as exc:  # the claim below meets it (and marks it) once its lease expires
            logger.warning("worker %s: not looking for dead local workers: %s", self.worker_id, exc)
            running_jobs = []
        for running in running_jobs:
            if owner_is_dead(running.lease_owner, self.worker_id):
                job = self.jobs.claim(self.worker_id, self.settings.lease_s, running.id,
                                      take_over_from=running.lease_owner)
                if job is not None:
                    logger.info("took over job %s from dead local worker %s", job.id, running.lease_owner)
                    return job
        return self.jobs.claim(self.worker_id, self.settings.lease_s)

    async def run_one(self, job_id: str, spec: JobSpec, claimed_at: float) -> None:
        """Bind the spec to this worker's policy, check egress and the endpoints, then run it.

        A spec may have reached Neo4j some other way than the API, so nothing in it is trusted: its
        seats are re-bound to the endpoints declared HERE, the hosts are resolved and checked before
        the first request, and a data file is read only under this worker's data root.
        """
        policy = self.settings.policy
        try:
            prepared = await asyncio.to_thread(prepare, spec, policy=policy, who=Who.WORKER)
            await asyncio.to_thread(self.store.check_questions, prepared.questions, f"job {spec.name}: ")
            await asyncio.wait_for(asyncio.to_thread(policy.check_egress, prepared.panel),
                                   timeout=self.settings.preflight_timeout_s)
            await preflight(prepared.panel, prepared.keys, self.settings.preflight_timeout_s)
        except (ValueError, TimeoutError) as exc:  # Policy/Panel/Dataset/Egress/PreflightError, WriteConflict, validation
            logger.error("job %s cannot run: %s", job_id, exc)
            await asyncio.to_thread(self.jobs.finish, job_id, self.worker_id, JobStatus.FAILED, [public_error(exc)])
            self.failed.append(job_id)
            return
        result = await run_job(prepared, self.store, self.jobs, self.worker_id, self.settings,
                               claimed_at=claimed_at, stop=self.stop, max_cost_usd=policy.job_max_cost_usd)
        if result.status is JobStatus.FAILED:
            self.failed.append(job_id)
            logger.error("worker %s: job %s failed: %s", self.worker_id, job_id, describe(result))
        else:
            logger.info("worker %s finished job %s: %s", self.worker_id, job_id, describe(result))


def public_error(exc: BaseException) -> str:
    """What a job's errors (which API callers read) may say about why it could not start.

    The policy's and the panel's own words name fields and endpoints, never a file's content; data
    files and endpoint probes get a generic line, and the worker's log keeps the details.
    """
    if isinstance(exc, DatasetError):
        return "the data file could not be loaded (details in the worker log)"
    if isinstance(exc, PreflightError):
        return (f"endpoint preflight failed for {', '.join(exc.endpoints)} (details in the worker log); "
                "no paid call was made")
    if isinstance(exc, TimeoutError):
        return "the egress check of the endpoints' hosts timed out; no call was made"
    return str(exc)


async def serve(store: GraphStore, settings: GeneratorSettings) -> Worker:
    worker = Worker(store, settings)
    worker.install_signal_handlers()
    await worker.run()
    return worker


def main(settings: GeneratorSettings | None = None) -> int:
    """Blocking entry point (`python -m services.generator`, `magdi worker`): 1 when a job it ran failed.

    A supervisor (systemd, Kubernetes, a CI step running `--once`) sees a failed job in the exit
    status instead of having to read the log.
    """
    from magdi.store.open import open_store
    from services.generator.settings import get_settings

    settings = settings or get_settings()
    with open_store() as store:
        worker = asyncio.run(serve(store, settings))
    if worker.failed:
        logger.error("worker %s: %d job(s) failed: %s", worker.worker_id, len(worker.failed), ", ".join(worker.failed))
        return 1
    return 0
