"""Where the engine reads partial debates from and writes finished turns to.

Production writes to Neo4j (`GraphSink`); the benchmark and dry runs can use `MemorySink`.
`GroupWriter` is a group commit in front of either: turns that finish while a write transaction
is running are written together in the next one. Every turn is still durable before the engine
moves on (its `save` returns after the commit), but N concurrent debates cost one transaction
instead of N that would queue on the same locks (all MAG writes MERGE the panel's Agent nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired

from magdi.mag import Debate, DebateStatus, Response
from magdi.retry import Hold, retry_while
from magdi.store.connection import is_transaction_timeout
from magdi.store.graph_store import DebateFilter, GraphStore

logger = logging.getLogger(__name__)


class DebateSink(Protocol):
    def load(self, debate_id: str) -> Debate | None: ...

    def save_many(self, debates: Sequence[Debate]) -> None: ...

    def known(self, job_id: str) -> tuple[set[str], set[str]]:
        """(ids of all stored debates of the job, ids of those already complete)."""
        ...


class GraphSink:
    """MERGE-only writes: rewriting a turn is a no-op, nothing is ever removed.

    Only responses that differ from what this sink knows to be committed are sent (plus the
    debate's header), so a debate's N turns cost O(N) response writes, not O(N^2).
    """

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self._committed: dict[str, dict[tuple[str, int], Response]] = {}
        self._lock = threading.Lock()

    def load(self, debate_id: str) -> Debate | None:
        debate = self.store.get_debate(debate_id)
        if debate is not None:
            self._remember(debate, {(r.agent, r.round) for r in debate.responses})
        return debate

    def save_many(self, debates: Sequence[Debate]) -> None:
        items = []
        with self._lock:
            for d in debates:
                known = self._committed.get(d.id, {})
                items.append((d, {(r.agent, r.round) for r in d.responses if known.get((r.agent, r.round)) != r}))
        self.store.write_turns(items)
        for d, keys in items:
            self._remember(d, keys)

    def _remember(self, debate: Debate, keys: set[tuple[str, int]]) -> None:
        with self._lock:
            known = self._committed.setdefault(debate.id, {})
            known.update({(r.agent, r.round): r for r in debate.responses if (r.agent, r.round) in keys})
            if debate.status is DebateStatus.COMPLETE:  # never written again: keep memory flat
                self._committed.pop(debate.id, None)

    def known(self, job_id: str) -> tuple[set[str], set[str]]:
        stored = set(self.store.debate_ids(DebateFilter(job_id=job_id)))
        done = set(self.store.debate_ids(DebateFilter(job_id=job_id, status=DebateStatus.COMPLETE.value)))
        return stored, done


class MemorySink:
    """Debates in a dict (thread-safe): for benchmarks and tests of the scheduling alone."""

    def __init__(self) -> None:
        self.debates: dict[str, Debate] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def load(self, debate_id: str) -> Debate | None:
        with self._lock:
            return self.debates.get(debate_id)

    def save_many(self, debates: Sequence[Debate]) -> None:
        with self._lock:
            for debate in debates:
                self.debates[debate.id] = debate
            self.writes += 1

    def known(self, job_id: str) -> tuple[set[str], set[str]]:
        with self._lock:
            mine = [d for d in self.debates.values() if d.job_id == job_id]
        return {d.id for d in mine}, {d.id for d in mine if d.status is DebateStatus.COMPLETE}


def is_store_outage(exc: BaseException) -> bool:
    """Neo4j unreachable, restarting, too slow to commit in time, or unsure whether a commit landed:
    the write may be retried as is.

    Retrying is safe because every write is a MERGE on derived ids (a repeat is a no-op). A
    transaction timeout counts: a server just back from a restart (cold caches, recovery) can take
    longer than `MAGDI_QUERY_TIMEOUT_S` for its first commits.
    """
    if isinstance(exc, ServiceUnavailable | SessionExpired | OSError):  # IncompleteCommit is a ServiceUnavailable
        return True
    return is_transaction_timeout(exc) or (isinstance(exc, Neo4jError) and exc.is_retryable())


class GroupWriter:
    """Coalesces concurrent `save` calls into one `save_many` transaction (group commit).

    While the store is unreachable (`is_store_outage`) a batch is held and retried for up to
    `outage_s`, so a Neo4j restart longer than the driver's own retry window stalls the debates
    instead of failing them. `gate`, awaited before every attempt, lets the job's lease keeper hold
    writes until the lease is re-validated after the outage (it returns True if it held them, and
    raises if the lease was lost meanwhile).
    """

    def __init__(self, sink: DebateSink, max_batch: int = 256, *, outage_s: float = 0.0,
                 gate: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.sink = sink
        self.max_batch = max_batch
        self.outage_s = outage_s
        self.gate = gate
        self.outages = 0  # times writes were held: the store unreachable, or the lease being re-validated
        self.held_s = 0.0  # seconds writes were held for, over all outages
        self._pending: dict[str, tuple[Debate, list[asyncio.Future[None]]]] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0
        self.saved = 0

    async def save(self, debate: Debate) -> None:
        """Return once `debate` (or a later snapshot of it) is committed; raise if the write failed."""
        await self.submit(debate)

    def submit(self, debate: Debate) -> asyncio.Future[None]:
        """Queue `debate` now (synchronously, so snapshots queue in the order they were made) and
        return the future that resolves once it, or a later snapshot of it, is committed.

        Callers that hold a per-debate lock submit under it and await outside it, so the next turn
        of the same debate can be added while this one is being written: the two then share a
        transaction instead of each waiting for its own.
        """
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="magdi-group-writer")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _, waiters = self._pending.pop(debate.id, (debate, []))
        self._pending[debate.id] = (debate, [*waiters, future])  # the latest snapshot is a superset
        self._wake.set()
        return future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                keys = list(self._pending)[: self.max_batch]
                batch = [self._pending.pop(k) for k in keys]
                try:
                    await self._commit([d for d, _ in batch])
                except BaseException as exc:  # noqa: BLE001 - handed to every waiter of this batch
                    for _, waiters in batch:
                        for w in waiters:
                            if not w.done():
                                w.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    logger.error("writing %d debate(s) failed: %s", len(batch), exc)
                    continue
                self.transactions += 1
                self.saved += len(batch)
                for _, waiters in batch:
                    for w in waiters:
                        if not w.done():
                            w.set_result(None)

    async def _commit(self, debates: list[Debate]) -> None:
        """Write one batch; hold it (gate closed or store unreachable) for up to `outage_s`."""
        hold = Hold()

        async def attempt() -> None:
            if self.gate is not None:
                started = time.monotonic()
                if await self.gate():  # the lease was being re-validated
                    hold.start(started)
            await asyncio.to_thread(self.sink.save_many, debates)

        def on_retry(exc: Exception, hold: Hold) -> None:
            logger.warning("store unavailable (%s: %s); holding %d debate(s), retrying for up to %.0f s more",
                           type(exc).__name__, exc, len(debates), self.outage_s - hold.held_s)

        try:
            await retry_while(attempt, transient=is_store_outage, hold=hold,
                              give_up=lambda h: h.held_s >= self.outage_s, on_retry=on_retry)
        except Exception:
            if hold.since is not None:
                self._count_hold(hold.since)
            raise
        if hold.since is not None:
            self._count_hold(hold.since)
            logger.warning("store is back; %d debate(s) held for %.1f s written", len(debates), hold.held_s)

    def _count_hold(self, since: float) -> None:
        # one writer task commits one batch at a time, so one held batch is one outage
        self.outages += 1
        self.held_s += time.monotonic() - since

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, waiters in self._pending.values():
            for w in waiters:
                if not w.done():
                    w.set_exception(RuntimeError("writer closed before this turn was stored"))
        self._pending.clear()
