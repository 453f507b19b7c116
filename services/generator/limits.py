"""Per-endpoint flow control: token buckets, in-flight slots, Retry-After pauses, circuit breaker.

Why client-side limits at all: with many debates in flight, an endpoint's RPM/TPM quota is the
real bound on throughput, and hitting it blindly turns into 429 storms and long Retry-After
pauses. A token bucket that refills at the quota's rate keeps us just under it.

A bucket of capacity B refilled at r/s admits at most B + r*T in any window T, so to stay within
a provider's sliding 60 s window of Q requests we refill at (Q - B)/60 with B = one second's worth.
A provider that enforces its per-minute quota per shorter window w (`Limits.window_s`; OpenAI:
"60,000 requests/minute may be enforced as 1,000 requests/second") admits W = Q*w/60 per window:
the capacity shrinks to B = Q/60 * w/60 (at least 1) and the refill to (W - B)/w, so that bursts
are no longer what the provider answers with 429s and a paused endpoint.
The retry rules copy the shape of openai-python's `_should_retry` / `_calculate_retry_timeout`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from magdi.panel import Backoff, Breaker, Limits

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
RETRYABLE_STATUS = frozenset({408, 409, 429})


class TokenBucket:
    """Capacity `capacity`, refilled at `rate` per second. Taking may leave a debt (level < 0).

    Debt lets one request larger than the capacity through (a long prompt under a small TPM
    quota) while still charging it in full: later requests wait until the debt is repaid.
    """

    def __init__(self, rate: float, capacity: float, clock: Clock = time.monotonic, window_s: float = 60.0) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate, self.capacity, self._clock, self.window_s = rate, capacity, clock, window_s
        self._level = capacity
        self._stamp = clock()

    @classmethod
    def per_minute(cls, quota: int, clock: Clock = time.monotonic, window_s: float = 60.0) -> TokenBucket:
        """A bucket that admits at most quota * window_s / 60 in any `window_s` seconds (module doc)."""
        window_s = min(window_s, 60.0)
        per_window = quota * window_s / 60
        burst = max(1.0, math.ceil(quota / 60 * window_s / 60))
        rate = max(per_window - burst, per_window * 0.5) / window_s  # a tiny quota: half of it, never 0
        return cls(rate, burst, clock, window_s)

    def resized(self, quota: int) -> TokenBucket:
        """A bucket for a per-minute `quota` that keeps this one's level (a debt carries over; a full
        bucket is capped at the new capacity)."""
        bucket = TokenBucket.per_minute(quota, self._clock, self.window_s)
        self._refill()
        bucket._level = min(bucket.capacity, self._level)
        return bucket

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` may be taken (requests bigger than capacity need a full bucket)."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self._level >= need else (need - self._level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self._level -= amount

    def adjust(self, delta: float) -> None:
        """Charge (+) or refund (-) the difference once the real size is known."""
        self._refill()
        self._level = min(self.capacity, self._level - delta)


class EndpointLimiter:
    """Request and token buckets, a Retry-After pause and max-in-flight slots for one endpoint."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.limits = limits
        self.shares = 1
        self.requests = TokenBucket.per_minute(limits.rpm, clock, limits.window_s) if limits.rpm else None
        self.tokens = TokenBucket.per_minute(limits.tpm, clock, limits.window_s) if limits.tpm else None
        self.slots = asyncio.Semaphore(limits.max_in_flight)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()  # FIFO: waiters are admitted in arrival order

    def share(self, n: int) -> None:
        """Size the buckets at 1/n of the quota: n processes are calling this endpoint (magdi.store.quota)."""
        n = max(1, n)
        if n == self.shares:
            return
        self.shares = n
        if self.requests and self.limits.rpm:
            self.requests = self.requests.resized(max(1, self.limits.rpm // n))
        if self.tokens and self.limits.tpm:
            self.tokens = self.tokens.resized(max(1, self.limits.tpm // n))

    def pause(self, seconds: float) -> None:
        """Hold every caller of this endpoint for `seconds` (a 429 with Retry-After)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait(self, tokens: int) -> float:
        waits = [self._paused_until - self._clock()]
        if self.requests:
            waits.append(self.requests.wait_time(1))
        if self.tokens:
            waits.append(self.tokens.wait_time(tokens))
        return max(waits)

    async def acquire(self, tokens: int) -> float:
        """Wait until one request of ~`tokens` tokens may go; returns the seconds waited."""
        start = self._clock()
        async with self._lock:
            while (wait := self._wait(tokens)) > 0:
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)
        return self._clock() - start

    def settle(self, estimated: int, actual: int | None) -> None:
        if self.tokens and actual is not None:
            self.tokens.adjust(actual - estimated)


class EndpointDown(RuntimeError):
    """The endpoint has failed for longer than `down_after_s`; its turns are recorded as absent."""


@dataclass
class CircuitBreaker:
    """closed -> (threshold consecutive failures) -> open: callers pause for a cooldown ->
    half-open: one probe goes through; success closes, failure re-opens with a doubled cooldown.
    A failing streak longer than `down_after_s` marks the endpoint down for the rest of the run.
    """

    config: Breaker
    name: str = "endpoint"
    clock: Clock = time.monotonic
    failures: int = 0
    down: bool = False
    last_error: str | None = None
    _open_until: float | None = None
    _cooldown: float = 0.0
    _streak_start: float | None = None
    _probing: bool = False
    opened: int = field(default=0)

    @property
    def state(self) -> str:
        if self.down:
            return "down"
        if self._open_until is None:
            return "closed"
        return "half-open" if self._probing else "open"

    async def before_call(self, poll_s: float = 0.05) -> None:
        """Return when a call may go; raise EndpointDown once the endpoint is given up on."""
        while True:
            if self.down:
                raise EndpointDown(f"{self.name} is down: {self.last_error}")
            if self._open_until is None:
                return
            now = self.clock()
            if now >= self._open_until and not self._probing:
                self._probing = True  # this caller is the probe; the others keep waiting
                return
            await asyncio.sleep(max(min(self._open_until - now, poll_s), poll_s / 5))

    def record_success(self) -> None:
        if self._open_until is not None:
            logger.info("%s recovered; circuit closed", self.name)
        self.failures, self._open_until, self._cooldown = 0, None, 0.0
        self._streak_start, self._probing = None, False

    def record_failure(self, error: str) -> None:
        now = self.clock()
        self.failures += 1
        self.last_error = error
        if self._streak_start is None:
            self._streak_start = now
        if self._open_until is not None and not self._probing:
            return  # a call that started before the circuit opened; the pause is already set
        if self._probing or self.failures >= self.config.failure_threshold:
            base = self._cooldown * 2 if self._cooldown else self.config.cooldown_s
            self._cooldown = min(base, self.config.max_cooldown_s)
            self._open_until = now + self._cooldown
            self._probing = False
            self.opened += 1
            logger.warning("%s failing (%d in a row: %s); pausing it for %.1f s",
                           self.name, self.failures, error, self._cooldown)
        if now - self._streak_start >= self.config.down_after_s and self.opened:
            self.down = True
            logger.error("%s has failed for %.0f s; giving up on it for this run: %s",
                         self.name, now - self._streak_start, error)

    def release_probe(self) -> None:
        """A probe that ended without a verdict (429, cancelled) lets the next caller probe."""
        self._probing = False


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or HTTP date); None if absent/invalid."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    parsed = email.utils.parsedate_tz(raw) if raw else None
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed) - time.time())


def should_retry(status: int, headers: Mapping[str, str] | None, backoff: Backoff) -> bool:
    """openai-python's rule: honour x-should-retry, retry 408/409/429/5xx, refuse huge Retry-After."""
    retry_after = parse_retry_after(headers)
    if retry_after is not None and math.isfinite(retry_after) and retry_after > backoff.max_retry_after_s:
        logger.debug("not retrying: Retry-After %.0f s exceeds %.0f s", retry_after, backoff.max_retry_after_s)
        return False
    flag = {k.lower(): v for k, v in (headers or {}).items()}.get("x-should-retry")
    if flag in ("true", "false"):
        return flag == "true"
    return status in RETRYABLE_STATUS or status >= 500


def retry_delay(retry_index: int, headers: Mapping[str, str] | None, backoff: Backoff,
                rng: random.Random) -> float:
    """Retry-After when the server gives a sane one, else capped exponential backoff minus 0-25% jitter."""
    retry_after = parse_retry_after(headers)
    if retry_after is not None and math.isfinite(retry_after) and 0 < retry_after <= backoff.max_retry_after_s:
        return retry_after
    sleep = min(backoff.initial_s * 2.0 ** min(retry_index, 30), backoff.max_s)
    return max(sleep * (1 - 0.25 * rng.random()), 0.0)
