"""The group writer: concurrent saves share a transaction, and writes are held through a store outage.

The sink here is an in-memory `MemorySink` that fails its first N `save_many` calls with the
driver's own exception types; the real Neo4j outage is in tests/reliability/test_neo4j_outage.py,
and a real transaction timeout is produced below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from neo4j.exceptions import ClientError, Neo4jError, ServiceUnavailable

from magdi.mag import Agent, Debate, Question, Response
from magdi.store.graph_store import GraphStore
from services.generator.turn_writers import GroupWriter, MemorySink, is_store_outage


class FlakySink(MemorySink):
    """Raises `errors` one by one from save_many, then stores normally."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)
        self.attempts = 0

    def save_many(self, debates: Sequence[Debate]) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        super().save_many(debates)


def debate(qid: str, turns: int = 1) -> Debate:
    agents = [Agent(name="a", model="m")]
    return Debate(question=Question(dataset="t", qid=qid, text="1+1?", gold_answer="2"), panel=agents, job_id="job-t",
                  responses=[Response(agent="a", round=r, answer="2", confidence=0.9) for r in range(turns)])


def test_what_counts_as_an_outage() -> None:
    assert is_store_outage(ServiceUnavailable("down")) and is_store_outage(ConnectionResetError())
    assert not is_store_outage(ClientError("syntax")) and not is_store_outage(ValueError("bug"))



def test_a_real_transaction_timeout_counts_as_an_outage(store) -> None:  # noqa: ANN001
    """A server just back from a restart can take longer than the query timeout to commit."""
    slow = "UNWIND range(1, 2000000000) AS x WITH x WHERE x % 7 = 3 RETURN count(*) AS n"
    with pytest.raises(Neo4jError) as caught:
        GraphStore(store.driver, database=store.database, query_timeout_s=0.5).rows(slow)
    assert is_store_outage(caught.value), caught.value.code


def test_concurrent_saves_share_a_transaction_and_the_latest_snapshot_wins() -> None:
    async def main() -> tuple[MemorySink, GroupWriter]:
        sink = MemorySink()
        writer = GroupWriter(sink)
        first = writer.submit(debate("q1", 1))
        second = writer.submit(debate("q1", 2))  # a later snapshot of the same debate
        third = writer.submit(debate("q2", 1))
        await asyncio.gather(first, second, third)
        await writer.aclose()
        return sink, writer

    sink, writer = asyncio.run(main())
    assert writer.transactions == 1 and sink.writes == 1
    assert sorted(len(d.responses) for d in sink.debates.values()) == [1, 2]


def save_one(sink: MemorySink, outage_s: float, raises: type[Exception] | None = None) -> GroupWriter:
    """Save one debate through a fresh writer (expecting `raises`, if given); returns the writer."""

    async def main() -> GroupWriter:
        writer = GroupWriter(sink, outage_s=outage_s)
        if raises is None:
            await writer.save(debate("q1"))
        else:
            with pytest.raises(raises):
                await writer.save(debate("q1"))
        await writer.aclose()
        return writer

    return asyncio.run(main())


def test_writes_are_held_through_an_outage_then_committed() -> None:
    sink = FlakySink(ServiceUnavailable("down"), ServiceUnavailable("still down"))
    writer = save_one(sink, outage_s=30)
    assert sink.attempts == 3 and len(sink.debates) == 1
    assert writer.outages == 1 and writer.held_s >= 1.0  # backoff 0.5 s + 1 s


def test_an_outage_longer_than_outage_s_fails_the_waiters() -> None:
    sink = FlakySink(*[ServiceUnavailable("down")] * 10)
    writer = save_one(sink, outage_s=1.2, raises=ServiceUnavailable)
    # attempts at 0 s, 0.5 s (held < 1.2 s: retry) and 1.5 s (gives up)
    assert sink.debates == {} and writer.outages == 1 and sink.attempts == 3


def test_other_errors_fail_at_once_and_are_not_outages() -> None:
    sink = FlakySink(ClientError("constraint"))
    writer = save_one(sink, outage_s=30, raises=ClientError)
    assert sink.attempts == 1 and writer.outages == 0


def test_the_gate_holds_writes_and_counts_the_hold() -> None:
    opened = asyncio.Event()

    async def gate() -> bool:  # like LeaseKeeper.wait_valid: True if it had to wait
        if opened.is_set():
            return False
        await opened.wait()
        return True

    async def main() -> tuple[MemorySink, GroupWriter, bool]:
        sink = MemorySink()
        writer = GroupWriter(sink, outage_s=30, gate=gate)
        pending = asyncio.ensure_future(writer.save(debate("q1")))
        await asyncio.sleep(0.3)
        stored_while_closed = bool(sink.debates)
        opened.set()
        await pending
        await writer.aclose()
        return sink, writer, stored_while_closed

    sink, writer, stored_while_closed = asyncio.run(main())
    assert not stored_while_closed and len(sink.debates) == 1
    assert writer.outages == 1 and writer.held_s >= 0.3
