"""A job's cost cap (`MAGDI_JOB_MAX_COST_USD`): the job stops before a call could take it past the cap.

Each call reserves its worst case before it is sent (every prompt byte a token, plus a few per
message, plus the whole `max_tokens` completion, at the endpoint's prices) and settles to what
`usage` says it cost when it returns (the worst case when the endpoint reports no usage). A call
starts only while what is spent plus what is reserved plus its own worst case stays within the cap
(it waits for calls in flight to settle when only their reservations stand in the way), so with
honest usage reports the cap is never passed. Once what is spent alone leaves no room for the next
call, the budget is exhausted: the engine drains and the job is marked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from magdi.panel import AgentConfig, Price

TOKENS_PER_MESSAGE = 16  # chat-template overhead, generously


def worst_case_usd(agent: AgentConfig, messages: Sequence[dict[str, str]], price: Price | None = None) -> float:
    """An upper bound of one call's cost at `price` (default: the agent's synchronous price): a token is
    at least one byte of the prompt."""
    prompt = sum(len(m["content"].encode("utf-8")) + TOKENS_PER_MESSAGE for m in messages)
    return (price or agent.price).cost(prompt, agent.max_tokens) or 0.0


@dataclass
class Budget:
    cap_usd: float
    spent_usd: float = 0.0  # before this run (a resumed job) and in it
    reserved_usd: float = 0.0
    exhausted: bool = False

    _settled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def reserve(self, worst_usd: float) -> bool:
        """True once a call with this worst case may start (its worst case is then held); False when
        even with nothing in flight it could pass the cap."""
        while True:
            if self.exhausted or self.spent_usd + worst_usd > self.cap_usd:
                self.exhausted = True
                self._settled.set()  # wake the other waiters: the job is draining
                return False
            if self.spent_usd + self.reserved_usd + worst_usd <= self.cap_usd:
                self.reserved_usd += worst_usd
                return True
            self._settled.clear()  # no await between the checks and here: nothing settles in between
            await self._settled.wait()

    def settle(self, worst_usd: float, actual_usd: float | None) -> None:
        self.reserved_usd -= worst_usd
        self.spent_usd += worst_usd if actual_usd is None else actual_usd
        self._settled.set()

    def describe(self) -> str:
        return (f"cost cap reached: ${self.spent_usd:.4f} spent of the ${self.cap_usd:g} a job may cost on this "
                "server (MAGDI_JOB_MAX_COST_USD); the next call could have passed it")
