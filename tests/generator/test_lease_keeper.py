"""The lease keeper renews on a thread of its own, so store writes blocked in an outage cannot starve it."""

from __future__ import annotations

import asyncio
import threading
import time

from magdi.mag import JobSpec, JobStatus
from magdi.store.jobs import JobStore
from services.generator.jobrun import LeaseKeeper
from services.generator.settings import GeneratorSettings

PANEL = {"agents": [{"name": "a", "model": "m", "base_url": "http://127.0.0.1:9/v1"}]}


def test_renewals_go_through_while_every_default_executor_thread_is_blocked(store):
    jobs = JobStore(store)
    spec = JobSpec(name="lease", dataset="gsm8k", data_path="gsm8k/test.jsonl", panel=PANEL)
    jobs.create(spec, total=1)
    settings = GeneratorSettings(lease_s=3.0, renew_every_s=0.5, lease_margin_s=0.5)
    claimed_at = time.monotonic()
    assert jobs.claim("w1", settings.lease_s, spec.id) is not None
    keeper = LeaseKeeper(jobs, spec.id, "w1", settings, on_lost=lambda: None, claimed_at=claimed_at)
    release = threading.Event()

    async def scenario() -> float:
        # what GroupWriter does in an outage: every default-executor thread waits on a store write
        blockers = [asyncio.to_thread(release.wait, 30) for _ in range(64)]
        tasks = [asyncio.ensure_future(b) for b in blockers]
        runner = asyncio.create_task(keeper.run())
        await asyncio.sleep(2.5)  # longer than lease_s - margin from the claim: renewals must have landed
        still_valid = keeper.valid_until - time.monotonic()
        release.set()
        runner.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return still_valid

    assert asyncio.run(scenario()) > 0, "the lease expired unrenewed while the executor was busy"
    job = jobs.get(spec.id)
    assert job is not None and job.status is JobStatus.RUNNING and job.lease_owner == "w1"


def test_a_write_that_waits_for_an_unconfirmed_lease_says_so_and_says_when_it_resumes(store, caplog):
    # a renewal can outlast the lease without failing (the driver retries it while Neo4j restarts):
    # the hold must still show in the log, or the job looks hung
    jobs = JobStore(store)
    settings = GeneratorSettings(lease_s=3.0, renew_every_s=0.5, lease_margin_s=0.5)
    keeper = LeaseKeeper(jobs, "job-x", "w1", settings, on_lost=lambda: None, claimed_at=time.monotonic() - 10)

    async def scenario() -> tuple[bool, bool]:
        waiter = asyncio.create_task(keeper.wait_valid())
        await asyncio.sleep(0.5)
        still_waiting = not waiter.done()
        keeper.valid_until = time.monotonic() + 5  # what a renewal that got through does
        return still_waiting, await asyncio.wait_for(waiter, 5)

    with caplog.at_level("WARNING", logger="services.generator.jobrun"):
        still_waiting, waited = asyncio.run(scenario())
    assert still_waiting and waited
    assert "writes are held until it succeeds" in caplog.text and "writing resumes" in caplog.text
    assert asyncio.run(keeper.wait_valid()) is False  # a valid lease lets writes through at once, silently
