"""Batch mode: the calls of every debate in flight collected and sent as batches, round by round.

A debate round depends on the previous one, so batching is round-synchronous: the engine runs
every debate as usual (`engine.Engine`, the same prompts, parsing, re-ask, invalid/absent rules and
writes as the synchronous path), but `BatchCalls.complete` parks each call instead of sending it.
Once no debate can go on without an answer (`engine.Activity` at zero), the parked calls go out
together: one batch input file per endpoint and model, split at the endpoint's `batch_limits`,
each uploaded and created (`Backend.submit`), recorded on the job in Neo4j (`magdi.store.batches`)
BEFORE the wait, polled until it ends, and its lines handed back to the waiting turns. The turns
then continue exactly as after a synchronous call: a re-ask goes into the next batch, as do the
next round's turns.

- A failed line (HTTP 5xx/408/409/429 in the error file, or a batch that expired, was cancelled or
  failed) is sent again in the next batch, up to the endpoint's `max_retries`; then the call
  fails like a synchronous call that gave up (an ask is stored ABSENT, a re-ask leaves the turn
  INVALID). Other HTTP errors are not retried.
- Crash safety: a line's custom_id is `<response id>#a.<n>` (ask) or `#r.<n>` (re-ask), attempt
  n, the same in every run of the job. A resumed run reads the job's open batches back and
  answers a call whose custom_id one of them holds from that batch (polling it if it still runs)
  instead of sending it again; a stored turn is never requested at all. A batch created but not
  yet recorded when the process died is found by its key (the job and a hash of its content) in
  the provider's batch list (`batch_api.submit`), or, offline, by its file name.
- Backends: `ApiBackend` (a provider's Batch API: `/v1/files`, `/v1/batches`) and `OfflineBackend`
  (files in a folder: it writes `<stem>.input.jsonl` and waits for `<stem>.output.jsonl`, as
  `vllm run-batch -i ... -o ...` writes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol as Interface

import openai
from openai.types import Batch

from magdi import ids
from magdi.errors import UserError
from magdi.panel import AgentConfig, PanelConfig, Price
from magdi.retry import Hold, retry_while
from magdi.store.batches import BatchRecord, BatchStore
from services.generator import batch_api
from services.generator.batch_api import (
    InputFile,
    LineResult,
    PollPolicy,
    Submitted,
    build_input_files,
    chat_request,
)
from services.generator.client import CallResult, Endpoints, Message
from services.generator.engine import Activity, Progress, Stopped

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429})
SUBMIT_TRIES = 8  # transient errors (connection, 429, 5xx) while uploading or creating a batch


class Backend(Interface):
    """Where batches go: a provider's Batch API or a folder of files."""

    kind: str  # stored on the batch records ("api" | "offline")

    async def submit(self, file: InputFile, key: str, seq: int) -> Submitted:
        """Send one input file as a batch (or find the one already sent under `key`)."""
        ...

    async def find(self, record: BatchRecord) -> Submitted | None:
        """The batch a dead run recorded but may not have created: where it is, or None if it was never sent."""
        ...

    async def wait(self, record: BatchRecord, on_poll: Callable[[BatchRecord], None]) -> None:
        """Until the batch has ended (completed, failed, expired, cancelled); updates `record` as it polls."""
        ...

    async def collect(self, record: BatchRecord) -> dict[str, LineResult]:
        """One result per custom_id of the ended batch (failed or missing lines with their error)."""
        ...


class ApiBackend:
    """A provider's Batch API (OpenAI's shape: upload, create, poll, download), through one client."""

    kind = "api"

    def __init__(self, client: openai.AsyncOpenAI, policy: PollPolicy, job_id: str) -> None:
        self.client, self.policy, self.job_id = client, policy, job_id
        self._batches: dict[str, Batch] = {}

    async def submit(self, file: InputFile, key: str, seq: int) -> Submitted:
        return await batch_api.submit(self.client, file, key=key, metadata={"magdi_job": self.job_id},
                                      filename=f"{_slug(self.job_id)}-{seq:04d}.jsonl")

    async def find(self, record: BatchRecord) -> Submitted | None:
        batch = await batch_api.find_batch(self.client, record.key)
        if batch is None:
            return None
        return Submitted(batch.id, batch.input_file_id, record.model, tuple(record.custom_ids), reused=True)

    async def wait(self, record: BatchRecord, on_poll: Callable[[BatchRecord], None]) -> None:
        def poll(batch: Batch) -> None:
            counts = batch.request_counts
            record.status = batch.status
            record.completed = counts.completed if counts else 0
            record.failed = counts.failed if counts else 0
            record.output_file_id, record.error_file_id = batch.output_file_id, batch.error_file_id
            on_poll(record)

        assert record.batch_id is not None
        self._batches[record.key] = await batch_api.wait(self.client, record.batch_id, self.policy, on_poll=poll)

    async def collect(self, record: BatchRecord) -> dict[str, LineResult]:
        batch = self._batches.pop(record.key)
        return (await batch_api.collect(self.client, batch, record.custom_ids)).results


Route = tuple[str, str]


def route(agent: AgentConfig) -> Route:
    """Where an agent's batches go, as each batch records it: (endpoint name or base URL, model).
    A resumed batch is waited for through the backend of its route, i.e. the client it was sent with."""
    return agent.endpoint or agent.base_url or "", agent.model


def api_backends(panel: PanelConfig, endpoints: Endpoints, policy: PollPolicy, job_id: str) -> dict[Route, Backend]:
    """The Batch API backend of each route: one per endpoint client (routes on one client share it)."""
    by_client: dict[int, Backend] = {}
    backends: dict[Route, Backend] = {}
    for agent in panel.agents:
        client = endpoints.by_agent[agent.name].client
        backends[route(agent)] = by_client.setdefault(id(client), ApiBackend(client, policy, job_id))
    return backends


class OfflineBackend:
    """Batch files in a folder, for `vllm run-batch` on a machine with no API server.

    Each batch is `<stem>.input.jsonl`, written atomically; it has ended once `<stem>.output.jsonl`
    holds a line for every request, or has stopped growing for `settle_s` (the requests without a
    line then count as failed). Write the output elsewhere and rename it into place to be safe.
    """

    kind = "offline"

    def __init__(self, folder: Path, policy: PollPolicy, job_name: str, settle_s: float = 5.0) -> None:
        self.folder, self.policy, self.job_name, self.settle_s = folder, policy, job_name, settle_s
        folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def output_path(input_path: str | Path) -> Path:
        return Path(str(input_path).removesuffix(".input.jsonl") + ".output.jsonl")

    def _input_path(self, seq: int, model: str, key: str) -> Path:
        return self.folder / f"{_slug(self.job_name)}-{seq:04d}-{_slug(model)}-{key.rsplit('/', 1)[-1][:8]}.input.jsonl"

    async def submit(self, file: InputFile, key: str, seq: int) -> Submitted:
        path = self._input_path(seq, file.model, key)
        stem = path.name.removesuffix(".input.jsonl")
        if not path.exists() or path.read_bytes() != file.content:  # same name, same content: already written
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(file.content)
            os.replace(tmp, path)
        logger.info("batch file %s written: %d requests for %s; waiting for %s", path, len(file.custom_ids),
                    file.model, self.output_path(path).name)
        return Submitted(stem, str(path.resolve()), file.model, file.custom_ids)

    async def find(self, record: BatchRecord) -> Submitted | None:
        path = self._input_path(record.seq, record.model, record.key)
        if not path.exists():
            return None
        return Submitted(path.name.removesuffix(".input.jsonl"), str(path.resolve()), record.model,
                         tuple(record.custom_ids), reused=True)

    async def wait(self, record: BatchRecord, on_poll: Callable[[BatchRecord], None]) -> None:
        assert record.input_file_id is not None
        out = self.output_path(record.input_file_id)
        wanted, done = set(record.custom_ids), set[str]()
        start, last_seen, stable_since = time.monotonic(), (-1, 0), 0.0
        for delay in self.policy.delays():
            stat = out.stat() if out.exists() else None
            size = stat.st_size if stat else -1
            if stat is not None:
                seen = (stat.st_size, stat.st_mtime_ns)
                if seen != last_seen:  # read again only what changed since the last poll
                    done = _ids_in(out) & wanted
                    last_seen, stable_since = seen, time.monotonic()
                elif size > 0 and time.monotonic() - stable_since >= self.settle_s:
                    break
                record.status, record.completed = "in_progress", len(done)
                if len(done) == len(wanted):
                    break
            else:
                record.status = "waiting_for_output"
            on_poll(record)
            waited = time.monotonic() - start
            if waited + delay > self.policy.timeout_s:
                raise batch_api.BatchTimeout(record.batch_id or record.key, record.status, waited)
            await asyncio.sleep(min(delay, self.settle_s) if size >= 0 else delay)
        record.status, record.output_file_id = "completed", str(out)
        on_poll(record)

    async def collect(self, record: BatchRecord) -> dict[str, LineResult]:
        assert record.input_file_id is not None
        out = self.output_path(record.input_file_id)
        results, _ = batch_api.read_results([out.read_text(encoding="utf-8", errors="replace")], record.custom_ids,
                                            source=str(out), missing=f"no line for it in {out.name}")
        record.completed = sum(1 for r in results.values() if r.ok)
        record.failed = len(results) - record.completed
        return results


def _ids_in(path: Path) -> set[str]:
    """The custom_ids with a line in an output file so far (a line being written is skipped)."""
    found = set()
    with path.open(encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            with contextlib.suppress(ValueError):
                found.add(batch_api.parse_line(raw).custom_id)
    return found


def _batch_key(job_id: str, content: bytes) -> str:
    """The key a batch is recorded and tagged under: the job and a digest of its input file."""
    return f"{job_id}/{ids.digest(content.decode('utf-8'), length=24)}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "x"


def _turn_of(call_id: str) -> str:
    """The response id (`magdi.ids.response_id`) of a call key or custom_id: "<debate>/<agent>/<round>#a.2"."""
    return call_id.rpartition("#")[0]


def _debate_of(call_id: str) -> str:
    return call_id.split("/", 1)[0]


@dataclass
class _Call:
    """A parked call: what to send, who waits for it, and its attempts so far."""

    key: str  # "<response id>#a" or "#r"
    agent: AgentConfig
    messages: list[Message]
    future: asyncio.Future[CallResult]
    backend: Backend
    attempt: int = 1
    errors: list[str] = field(default_factory=list)

    @property
    def custom_id(self) -> str:
        return f"{self.key}.{self.attempt}"

    @property
    def response_id(self) -> str:
        return _turn_of(self.key)

    @property
    def round(self) -> int:
        return int(self.response_id.rsplit("/", 1)[-1])


@dataclass
class _Open:
    """A batch this run waits for (or read back from an earlier run): its record and cached results."""

    record: BatchRecord
    backend: Backend
    results: dict[str, LineResult] | None = None
    turns: set[str] = field(default_factory=set)  # response ids with a line in it, not yet stored


class BatchCalls:
    """`engine.Calls` for batch mode; `aclose()` stops it (open batches stay recorded for a resume)."""

    def __init__(self, job_id: str, backends: dict[Route, Backend], *,
                 records: BatchStore | None = None, progress: Progress | None = None,
                 draining: Callable[[], bool] = lambda: False, next_seq: int = 0) -> None:
        """`backends`: per `route`; `records`: where batches are recorded (None: nowhere, e.g. a benchmark)."""
        self.job_id, self.backends = job_id, backends
        self.records, self.progress, self.draining = records, progress or Progress(), draining
        self.activity = Activity()
        self._wake = asyncio.Event()
        self.activity.on_idle = self._wake.set
        self._parked: list[_Call] = []
        self._open: dict[str, _Open] = {}  # by batch key
        self._closed: dict[str, _Open] = {}  # ingested while a flush may still hand out its lines
        self._by_custom_id: dict[str, _Open] = {}
        self._turn_batches: dict[str, set[str]] = {}  # response id -> keys of open batches with a line of it
        self._ingested: list[str] = []  # keys of batches whose turns are all stored, to mark in Neo4j
        self._seq = next_seq
        self._task: asyncio.Task[None] | None = None
        self.lines_sent = self.lines_retried = self.lines_failed = 0

    async def resume(self, reopen: Iterable[BatchRecord], complete_debates: Iterable[str]) -> None:
        """Take over the open batches of earlier runs: their lines answer the calls that ask for them.

        A batch recorded but without a provider id (the run died while uploading it) is looked up by its
        key; if it was never created, its lines are simply sent again when asked for. Lines of debates
        already complete are not needed.
        """
        complete = set(complete_debates)
        for record in reopen:
            backend = self.backends.get((record.endpoint, record.model))
            if backend is None or backend.kind != record.kind:
                sends = ", ".join(sorted(f"{b.kind} to {m} at {e}" for (e, m), b in self.backends.items()))
                raise UserError(f"batch {record.batch_id or record.key} of job {self.job_id} was sent as "
                                f"{record.kind!r} to {record.model} at {record.endpoint}; this run sends {sends} "
                                "(resume the job the way it was started)")
            if record.batch_id is None:
                found = await backend.find(record)
                if found is None:
                    logger.info("job %s: batch %s was recorded but never sent", self.job_id, record.key)
                    record.status, record.ingested = "not_sent", True
                    self._ingested.append(record.key)
                    await self._write_status(record)
                    continue
                record.batch_id, record.input_file_id, record.status = found.batch_id, found.input_file_id, "submitted"
                await self._write_status(record)
            self._track(record, backend, {cid for cid in record.custom_ids if _debate_of(cid) not in complete})
            self.progress.batches_resumed += 1

    # -- engine.Calls --------------------------------------------------------------------------
    def price(self, agent: AgentConfig) -> Price:
        return agent.price.for_batch()

    async def complete(self, agent: AgentConfig, messages: list[Message], key: str) -> CallResult:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="magdi-batch-flusher")
        call = _Call(key, agent, list(messages), asyncio.get_running_loop().create_future(),
                     self.backends[route(agent)])
        self._parked.append(call)
        self.activity.leave()  # the flusher counts this waiter in again when it resolves the future
        return await call.future

    def stored(self, key: str) -> None:
        for batch_key in self._turn_batches.pop(key, ()):
            entry = self._open.get(batch_key)
            if entry is not None:
                entry.turns.discard(key)
                self._close_if_done(entry)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._mark_ingested()

    # -- the flusher ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.activity.busy == 0 and self._parked:
                await self._flush()

    async def _flush(self) -> None:
        """Send what is parked, wait for every batch involved, hand the lines back (or park them again)."""
        parked, self._parked = self._parked, []
        self.progress.flushes += 1
        waiting: dict[str, list[_Call]] = {}
        try:
            with contextlib.suppress(Exception):  # logged there; a resume only reads those batches again
                await self._mark_ingested()
            fresh: dict[tuple[int, str], list[_Call]] = {}
            for call in parked:
                entry = self._by_custom_id.get(call.custom_id)
                if entry is not None:  # sent by an earlier run (or earlier in this one): never again
                    waiting.setdefault(entry.record.key, []).append(call)
                elif self.draining():
                    self._resolve(call, exception=Stopped())
                else:
                    fresh.setdefault((id(call.backend), call.agent.model), []).append(call)
            try:
                for calls in fresh.values():
                    await self._send(calls, waiting)
            except Exception as exc:  # the calls not sent fail; those already in a recorded batch go on
                logger.error("job %s: sending a batch failed: %s", self.job_id, exc)
                sent = {id(c) for calls in waiting.values() for c in calls}
                for call in parked:
                    if id(call) not in sent:
                        self._resolve(call, exception=exc)
            outcomes = await asyncio.gather(*(self._settle(self._open_batch(b)) for b in waiting),
                                            return_exceptions=True)
            for calls, outcome in zip(waiting.values(), outcomes, strict=True):
                for call in calls:
                    if isinstance(outcome, BaseException):
                        self._resolve(call, exception=_as_exception(outcome))
                    else:
                        self._deliver(call, outcome[call.custom_id])
        finally:  # nobody waits forever: whatever was not answered or parked again fails
            again = {id(c) for c in self._parked}
            for call in parked:
                if id(call) not in again:
                    self._resolve(call, exception=RuntimeError("the batch flusher stopped before this call ended"))

    def _open_batch(self, key: str) -> _Open:
        return self._open.get(key) or self._closed[key]

    async def _send(self, calls: list[_Call], waiting: dict[str, list[_Call]]) -> None:
        """Record, write and send the input files of one endpoint and model; their calls then wait in `waiting`.

        Each batch is recorded (key, custom_ids) before it is uploaded and updated once created, so a
        run that dies in between leaves a record a resume can look the batch up by.
        """
        backend, agent = calls[0].backend, calls[0].agent
        calls = sorted(calls, key=lambda c: c.custom_id)  # the same calls make the same file (and key)
        by_id = {c.custom_id: c for c in calls}
        files = build_input_files((chat_request(c.custom_id, c.agent, c.messages) for c in calls), agent.batch_limits)
        for file in files:
            key = await asyncio.to_thread(_batch_key, self.job_id, file.content)  # up to 200 MB: off the loop
            batch_calls = [by_id[cid] for cid in file.custom_ids]
            record = BatchRecord(job_id=self.job_id, key=key, batch_id=None, kind=backend.kind, seq=self._seq,
                                 model=file.model, endpoint=route(agent)[0],
                                 input_file_id=None, custom_ids=list(file.custom_ids),
                                 rounds=sorted({c.round for c in batch_calls}))
            self._seq += 1
            if self.records is not None:
                await asyncio.to_thread(self.records.record, record)
            submitted = await _with_retries(lambda f=file, r=record: backend.submit(f, r.key, r.seq))
            record.batch_id, record.input_file_id, record.status = submitted.batch_id, submitted.input_file_id, "submitted"
            if self.records is not None:  # before anything waits on it
                await asyncio.to_thread(self.records.update_status, record)
            self.lines_sent += len(file.custom_ids)
            self.progress.batch_requests += len(file.custom_ids)
            self._track(record, backend, set(file.custom_ids))
            waiting[record.key] = batch_calls
            logger.info("job %s: batch %s sent (%d requests, %s, rounds %s)", self.job_id, record.batch_id,
                        record.total, record.model, record.rounds)

    def _track(self, record: BatchRecord, backend: Backend, needed: set[str]) -> _Open:
        entry = _Open(record, backend, turns={_turn_of(cid) for cid in needed})
        self._open[record.key] = entry
        for cid in record.custom_ids:
            self._by_custom_id[cid] = entry
        for turn in entry.turns:
            self._turn_batches.setdefault(turn, set()).add(record.key)
        self.progress.batches[record.key] = record
        self._close_if_done(entry)
        return entry

    async def _settle(self, entry: _Open) -> dict[str, LineResult]:
        if entry.results is None:
            changed = asyncio.Event()
            writer = asyncio.create_task(self._write_polls(entry.record, changed))
            try:
                await entry.backend.wait(entry.record, lambda _record: changed.set())
                entry.results = await entry.backend.collect(entry.record)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            self.progress.batch_lines_done += sum(1 for r in entry.results.values() if r.ok)
            await self._write_status(entry.record)
        return entry.results

    def _deliver(self, call: _Call, line: LineResult) -> None:
        """A line's answer to its waiter, or the call parked again for the next batch (a retryable failure)."""
        result = line.call_result(self.price(call.agent))  # the price the engine reserved the call at
        if result.text is None:
            call.errors.append(result.error or "failed")
            retryable = line.status_code is None or line.status_code >= 500 or line.status_code in RETRY_STATUS
            if retryable and call.attempt <= call.agent.max_retries:
                call.attempt += 1
                self.lines_retried += 1
                self.progress.batch_retries += 1
                self._parked.append(call)  # still waiting: it goes out in the next batch
                return
            self.lines_failed += 1
            result.error = f"{result.error} (gave up after {call.attempt} batch attempts)"
        result.attempts = call.attempt
        self._resolve(call, result)

    def _resolve(self, call: _Call, result: CallResult | None = None, *, exception: BaseException | None = None) -> None:
        if call.future.done():
            return
        self.activity.enter()  # counted in before the waiter runs: no flush can start in between
        if exception is not None:
            call.future.set_exception(exception)
        else:
            call.future.set_result(result)  # type: ignore[arg-type]

    # -- records -------------------------------------------------------------------------------
    async def _write_polls(self, record: BatchRecord, changed: asyncio.Event, every_s: float = 1.0) -> None:
        """While a batch runs: its latest poll (status, lines done) into Neo4j, at most once a second."""
        while True:
            await changed.wait()
            changed.clear()
            await self._write_status(record)
            await asyncio.sleep(every_s)

    async def _write_status(self, record: BatchRecord) -> None:
        if self.records is None:
            return
        try:
            await asyncio.to_thread(self.records.update_status, record)
        except Exception as exc:  # noqa: BLE001 - informative only; the batch itself is recorded
            logger.warning("batch %s: status not stored (%s)", record.batch_id or record.key, exc)

    def _close_if_done(self, entry: _Open) -> None:
        if not entry.turns and not entry.record.ingested:
            entry.record.ingested = True
            self._ingested.append(entry.record.key)
            self._closed[entry.record.key] = self._open.pop(entry.record.key)
            for cid in entry.record.custom_ids:
                if self._by_custom_id.get(cid) is entry:
                    del self._by_custom_id[cid]

    async def _mark_ingested(self) -> None:
        marked, self._ingested = self._ingested, []
        for key in marked:
            entry = self._closed.pop(key, None)
            if entry is not None:
                entry.results = None  # its lines are all stored: free the answers
        if marked and self.records is not None:
            try:
                await asyncio.to_thread(self.records.mark_ingested, marked)
            except Exception as exc:
                logger.warning("job %s: batches not marked ingested (%s); a resume reads them again", self.job_id, exc)
                self._ingested.extend(marked)
                raise


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")


async def _with_retries(send: Callable[[], Awaitable[Submitted]]) -> Submitted:
    """Upload + create, again after a transient error (the key finds a batch the failed try created):
    `SUBMIT_TRIES` tries, 1 s apart at first, the delay doubling up to 60 s."""

    def on_retry(exc: Exception, hold: Hold) -> None:
        logger.warning("sending a batch failed (%s); try %d of %d follows", type(exc).__name__,
                       hold.failed_attempts + 1, SUBMIT_TRIES)

    return await retry_while(send, transient=lambda exc: isinstance(exc, batch_api.RETRYABLE), hold=Hold(),
                             give_up=lambda hold: hold.failed_attempts >= SUBMIT_TRIES, delay_s=1.0,
                             max_delay_s=60.0, on_retry=on_retry)
