"""Token buckets, retry rules and the circuit breaker, with a controllable clock where it matters."""

from __future__ import annotations

import asyncio
import bisect
import random

import pytest

from magdi.panel import Backoff, Breaker, Limits
from services.generator.limits import (
    CircuitBreaker,
    EndpointDown,
    EndpointLimiter,
    TokenBucket,
    parse_retry_after,
    retry_delay,
    should_retry,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_stays_within_a_sliding_minute_quota() -> None:
    """Capacity B plus refill (Q-B)/60 per s admits at most Q in any 60 s window."""
    clock = FakeClock()
    bucket = TokenBucket.per_minute(600, clock)
    admitted = []
    for step in range(120 * 100):  # two minutes in 10 ms steps, taking whenever allowed
        clock.now = 1000.0 + step / 100
        while bucket.wait_time(1) == 0:
            bucket.take(1)
            admitted.append(clock.now)
    for i, t in enumerate(admitted):
        window = [x for x in admitted[i:] if x < t + 60]
        assert len(window) <= 600
    assert len(admitted) >= 0.97 * 1200, "and stays close to the quota"


def admitted_over(bucket: TokenBucket, clock: FakeClock, seconds: float, amount: int = 1) -> list[float]:
    """When requests of `amount` go, taking whenever the bucket allows, in 1 ms steps."""
    admitted = []
    for step in range(int(seconds * 1000)):
        clock.now = 1000.0 + step / 1000
        while bucket.wait_time(amount) == 0:
            bucket.take(amount)
            admitted.append(clock.now)
    return admitted


def max_in_any_window(times: list[float], window_s: float) -> int:
    return max(bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times))


@pytest.mark.parametrize(("quota", "window_s"), [(1200, 1.0), (60_000, 1.0), (600, 10.0)])
def test_bucket_told_the_providers_window_stays_within_it_and_near_the_quota(quota: int, window_s: float) -> None:
    """A provider that enforces rpm per shorter window (OpenAI: 60,000/min as 1,000/s) admits
    rpm * w / 60 in any w seconds; the bucket keeps to that and still runs close to the quota."""
    clock = FakeClock()
    admitted = admitted_over(TokenBucket.per_minute(quota, clock, window_s=window_s), clock, 30)
    assert max_in_any_window(admitted, window_s) <= quota * window_s / 60
    assert len(admitted) >= 0.9 * quota / 2, "30 s at >= 0.9 of the quota"
    # told nothing, the same quota bursts a second's worth at once: more than a 1 s window admits
    clock = FakeClock()
    untold = admitted_over(TokenBucket.per_minute(quota, clock), clock, 3)
    assert max_in_any_window(untold, 1.0) > quota / 60


def test_token_bucket_debt_lets_a_big_request_through_and_charges_it() -> None:
    clock = FakeClock()
    bucket = TokenBucket.per_minute(6000, clock)  # 100 capacity, ~98/s
    assert bucket.wait_time(5000) == 0  # bigger than capacity: waits for a full bucket only
    bucket.take(5000)
    assert bucket.wait_time(1) == pytest.approx((1 + 4900) / bucket.rate)
    bucket.adjust(-4000)  # the real usage was smaller: refund
    assert bucket.wait_time(1) == pytest.approx((1 + 900) / bucket.rate)


def test_limiter_pause_holds_callers() -> None:
    async def main() -> float:
        limiter = EndpointLimiter(Limits(rpm=None, tpm=None, max_in_flight=2))
        limiter.pause(0.2)
        return await limiter.acquire(10)

    assert asyncio.run(main()) >= 0.19


def test_retry_rules_follow_openai_python() -> None:
    backoff = Backoff(initial_s=0.5, max_s=8.0)
    rng = random.Random(0)
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert retry_delay(0, {"retry-after": "3"}, backoff, rng) == 3.0
    for n, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (10, 8.0)]:
        d = retry_delay(n, None, backoff, rng)
        assert 0.75 * cap <= d <= cap
    assert retry_delay(0, {"retry-after": "500"}, backoff, rng) <= 0.5, "absurd Retry-After is not slept on"
    assert should_retry(429, {}, backoff) and should_retry(503, {}, backoff) and should_retry(408, {}, backoff)
    assert not should_retry(400, {}, backoff) and not should_retry(404, {}, backoff)
    assert not should_retry(429, {"retry-after": "500"}, backoff)
    assert should_retry(400, {"x-should-retry": "true"}, backoff)
    assert not should_retry(503, {"x-should-retry": "false"}, backoff)


def test_breaker_opens_probes_and_declares_down() -> None:
    async def main() -> None:
        breaker = CircuitBreaker(Breaker(failure_threshold=2, cooldown_s=0.05, max_cooldown_s=0.1, down_after_s=0.3))
        await breaker.before_call()
        breaker.record_failure("503")
        assert breaker.state == "closed"
        breaker.record_failure("503")
        assert breaker.state == "open"
        loop = asyncio.get_running_loop()
        start = loop.time()
        await breaker.before_call()  # waits out the cooldown, then is the probe
        assert loop.time() - start >= 0.04 and breaker.state == "half-open"
        breaker.record_success()
        assert breaker.state == "closed" and breaker.failures == 0
        while not breaker.down:  # keeps failing: probes fail, cooldown doubles, then down
            await breaker.before_call()
            breaker.record_failure("503 again")
        with pytest.raises(EndpointDown, match="503 again"):
            await breaker.before_call()

    asyncio.run(main())
