"""Debate pages cost what they return, not what the store holds: checked on Neo4j's PROFILE plans.

No timing here: the plan's operators and db hits are what grows with the store, so they are what
we assert. A page must be an index seek read in id order that stops after `limit` rows; a label
scan, or a Sort/Top over every match, means the first page of a 100k store reads 100k nodes.
"""

from __future__ import annotations

from importlib.metadata import version
from importlib.util import find_spec
from typing import Any

import pytest

from magdi.store.graph_store import DebateFilter, GraphStore, page_query

LIMIT = 10
SCANS_AND_SORTS = {"NodeByLabelScan", "AllNodesScan", "Sort", "Top", "PartialSort", "PartialTop"}


@pytest.fixture
def populated(store: GraphStore, make_debate) -> GraphStore:  # noqa: ANN001
    """240 debates over 4 datasets and 6 jobs (60 and 40 matches per filter value)."""
    store.write_debates([make_debate(i, dataset=f"ds{i % 4}", job_id=f"job{i % 6}") for i in range(240)])
    return store


def plan(store: GraphStore, flt: DebateFilter, after: str | None) -> tuple[set[str], int, int]:
    """(operator names, rows produced by the leaf that reads Debates, total db hits) of one page."""
    query, params = page_query(flt, after, LIMIT + 1, "RETURN d.id AS id")
    with store.driver.session() as session:
        profile = session.run("PROFILE " + query, params).consume().profile
    ops: list[dict[str, Any]] = []

    def walk(op: dict[str, Any]) -> None:
        ops.append(op)
        for child in op.get("children", []):
            walk(child)

    walk(profile)
    names = {op["operatorType"].split("@")[0] for op in ops}
    leaf = ops[-1]
    return names, leaf["rows"], sum(op.get("dbHits", 0) for op in ops)


FILTERS = [  # (filter, the seek operator expected)
    (DebateFilter(), "NodeUniqueIndexSeekByRange"),
    (DebateFilter(dataset="ds1"), "NodeIndexSeek"),
    (DebateFilter(job_id="job2"), "NodeIndexSeek"),
    (DebateFilter(dataset="ds2", job_id="job2"), "NodeIndexSeek"),
]


def test_first_and_deep_pages_are_index_seeks_that_stop_at_the_limit(populated: GraphStore) -> None:
    for flt, index in FILTERS:
        matches = populated.debate_ids(flt)
        assert len(matches) >= 20
        for after in (None, matches[len(matches) // 2]):  # first page, then a deep one
            names, leaf_rows, db_hits = plan(populated, flt, after)
            assert index in names and not names & SCANS_AND_SORTS, (flt, after, names)
            # dataset+job: the job index leads and the dataset test filters what it reads (half matches here,
            # interleaved in id order, i.e. by content hash: about two reads per match, plus some slack)
            both = flt.dataset and flt.job_id
            assert leaf_rows <= (LIMIT + 1) * (2 if both else 1) + (LIMIT // 2 if both else 1), (flt, after, leaf_rows)
            assert db_hits <= 8 * LIMIT + 40, (flt, after, db_hits)


def test_pages_still_walk_every_match_once_in_id_order(populated: GraphStore) -> None:
    for flt in (DebateFilter(), DebateFilter(dataset="ds3"), DebateFilter(job_id="job5")):
        seen, cursor = [], None
        while True:
            page = populated.list_debates(flt, limit=7, cursor=cursor)
            seen += [item["id"] for item in page.items]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == populated.debate_ids(flt)


def test_the_driver_reads_through_its_rust_extension_of_the_same_version() -> None:
    assert find_spec("neo4j._rust") is not None, "neo4j-rust-ext is not installed"
    assert version("neo4j-rust-ext").startswith(version("neo4j") + "."), (version("neo4j"), version("neo4j-rust-ext"))
