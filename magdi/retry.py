"""The project's one retry policy for work that may simply be repeated, built on tenacity.

It serves idempotent work held up by a dependency that is briefly away: group-committed MAG writes
while Neo4j restarts (`services.generator.turn_writers.GroupWriter`), job lease renewals
(`services.generator.jobrun.LeaseKeeper`) and batch uploads, which a key makes repeatable
(`services.generator.batching`). Each attempt that fails with a transient error is
repeated after a capped exponential delay until the caller's `give_up` says the hold has lasted
too long; any other error, and the last transient one, is raised as is.

Two retries deliberately live elsewhere: endpoint calls (`services.generator.client.Endpoint`),
whose every retry must pass the endpoint's rate limiter and circuit breaker and whose 429 waits
are counted apart; and the Neo4j driver's managed transaction retries inside one unit of work
(`max_transaction_retry_time`, set in `magdi.store.connection`), which this policy wraps.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")


@dataclass
class Hold:
    """When a piece of work was first held up: by its first transient failure, or by the caller
    (a gate that made it wait, the moment a failed request was sent); and how many attempts have
    failed so far, for callers that give up after a number of tries rather than a time."""

    since: float | None = None
    failed_attempts: int = 0

    def start(self, at: float | None = None) -> None:
        if self.since is None:
            self.since = time.monotonic() if at is None else at

    @property
    def held_s(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


async def retry_while(fn: Callable[[], Awaitable[T]], *, transient: Callable[[Exception], bool], hold: Hold,
                      give_up: Callable[[Hold], bool], delay_s: float = 0.5, max_delay_s: float = 5.0,
                      on_retry: Callable[[Exception, Hold], None] | None = None) -> T:
    """`await fn()`, repeated while it fails with a `transient` error and `give_up(hold)` is False.

    Delays start at `delay_s` and double up to `max_delay_s` (equal values: a fixed delay).
    `hold` starts at the first transient failure unless the caller started it earlier; `on_retry`
    is called before each delay (to log). Cancellation is never retried.
    """

    async def attempt() -> T:  # tenacity awaits only coroutine functions: a lambda's coroutine would come back unawaited
        return await fn()

    def stop(state: tenacity.RetryCallState) -> bool:
        hold.start()
        hold.failed_attempts = state.attempt_number
        return give_up(hold)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            assert isinstance(exc, Exception)
            on_retry(exc, hold)

    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, Exception) and transient(exc)),
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=delay_s, max=max_delay_s),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)
