"""magdi.retry: the one retry policy for idempotent work held up by a dependency that is away."""

from __future__ import annotations

import asyncio
import time

import pytest

from magdi.retry import Hold, retry_while


class Flaky:
    """Fails with `errors` in turn, then returns "ok"; records when each attempt began."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.starts: list[float] = []

    async def __call__(self) -> str:
        self.starts.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def run(fn: Flaky, hold: Hold | None = None, budget_s: float = 5.0, **kw: object) -> str:
    hold = hold or Hold()
    return asyncio.run(retry_while(fn, transient=lambda e: isinstance(e, ConnectionError), hold=hold,
                                   give_up=lambda h: h.held_s >= budget_s, **kw))  # type: ignore[arg-type]


def test_transient_errors_are_retried_with_doubling_capped_delays() -> None:
    fn, hold, retried = Flaky(ConnectionError("a"), ConnectionError("b"), ConnectionError("c")), Hold(), []
    assert run(fn, hold, delay_s=0.05, max_delay_s=0.1, on_retry=lambda e, h: retried.append(str(e))) == "ok"
    gaps = [b - a for a, b in zip(fn.starts, fn.starts[1:], strict=False)]
    assert retried == ["a", "b", "c"] and len(gaps) == 3
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.1  # 0.05, 0.1, then capped at 0.1 (lower bounds only)
    assert hold.since == pytest.approx(fn.starts[0], abs=0.05), "the hold began at the first failure"


def test_other_errors_and_the_last_transient_one_are_raised_as_is() -> None:
    fn = Flaky(ConnectionError("a"), ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        run(fn, delay_s=0.01)
    assert len(fn.starts) == 2
    down = Flaky(*[ConnectionError(str(i)) for i in range(100)])
    with pytest.raises(ConnectionError):
        run(down, budget_s=0.1, delay_s=0.02, max_delay_s=0.02)
    assert 3 <= len(down.starts) < 20, "gave up once the hold lasted the budget"


def test_a_hold_the_caller_started_counts_towards_the_budget() -> None:
    fn = Flaky(ConnectionError("a"))
    with pytest.raises(ConnectionError):
        run(fn, Hold(since=time.monotonic() - 10), budget_s=5.0)
    assert len(fn.starts) == 1


def test_cancellation_is_never_retried() -> None:
    fn = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        run(fn, delay_s=0.01)
    assert len(fn.starts) == 1


def test_a_caller_can_give_up_after_a_number_of_tries() -> None:
    """What a batch upload does: at most 3 tries, however short the hold has been."""
    fn, seen = Flaky(*(ConnectionError(str(i)) for i in range(5))), []
    with pytest.raises(ConnectionError, match="2"):
        asyncio.run(retry_while(fn, transient=lambda e: isinstance(e, ConnectionError), hold=Hold(),
                                give_up=lambda h: h.failed_attempts >= 3, delay_s=0.01, max_delay_s=0.01,
                                on_retry=lambda e, h: seen.append(h.failed_attempts)))
    assert len(fn.starts) == 3 and seen == [1, 2]


def test_a_plain_callable_that_returns_a_coroutine_is_awaited_and_retried() -> None:
    """What callers pass (`lambda f=file: backend.submit(f)`): not a coroutine function itself."""
    flaky = Flaky(ConnectionError("refused"))
    assert run(lambda: flaky(), delay_s=0.01) == "ok"  # type: ignore[arg-type]
    assert len(flaky.starts) == 2
