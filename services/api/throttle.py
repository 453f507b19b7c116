"""Cypher admission: a cap on queries running at once and a per-client rate, both answered with 429.

A user query may run until its server-side timeout (10 s by default) on a worker thread. Without
a cap, a few dozen slow queries take every thread of the pool that also serves the other
endpoints; with it, the excess is refused at once with `Retry-After` and the pool stays free.
Clients are told apart by their address (behind a reverse proxy, let the proxy rate-limit).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MAX_CLIENTS = 10_000  # idle clients are forgotten beyond this many


class Throttled(Exception):  # noqa: N818 - an answer, like HTTP 429
    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class CypherGate:
    """`with gate.admit(client):` runs a query, or raises Throttled (too many running, or too fast)."""

    def __init__(self, max_concurrent: int, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrent = max_concurrent
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute / 4)
        self.clock = clock
        self.running = 0
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @contextmanager
    def admit(self, client: str) -> Iterator[None]:
        with self._lock:
            self._take(client)
            if self.running >= self.max_concurrent:
                raise Throttled(f"{self.running} Cypher queries are running, the most this server runs at once; "
                                "retry shortly", 1.0)
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def _take(self, client: str) -> None:
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS:
                self._forget_idle(now)
            bucket = self._buckets[client] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / self.rate
            raise Throttled(f"too many Cypher queries from this client (at most {self.rate * 60:g} a minute)",
                            math.ceil(wait))
        bucket.tokens -= 1.0

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.stamp > full_after]:
            del self._buckets[key]
