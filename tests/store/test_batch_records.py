"""Batch records read back per job, for one job or many at once (`magdi jobs status`)."""

from __future__ import annotations

from magdi.store.batches import BatchRecord, BatchStore
from magdi.store.graph_store import GraphStore


def test_the_batches_of_several_jobs_come_back_per_job_in_submission_order(store: GraphStore) -> None:
    batches = BatchStore(store)
    for job, seqs in (("job-sa", (1, 0, 2)), ("job-sb", (0,))):
        for seq in seqs:
            batches.record(BatchRecord(job_id=job, key=f"{job}/k{seq}", kind="api", seq=seq, model="m",
                                       endpoint="e", custom_ids=[f"d/a/0#a.{i}" for i in range(seq + 1)]))
    found = batches.summaries_of(["job-sa", "job-sb", "job-sc"])
    assert [b["seq"] for b in found["job-sa"]] == [0, 1, 2] and [b["total"] for b in found["job-sa"]] == [1, 2, 3]
    assert [b["key"] for b in found["job-sb"]] == ["job-sb/k0"] and found["job-sc"] == []
    assert batches.summaries("job-sa") == found["job-sa"]
