"""The batches of a batch-mode job, on `:Batch` nodes linked to its `:Job` (`-[:OF]->`).

A batch-mode job sends each round's turns as Batch API jobs (or offline batch files) that may take
hours; its process can die meanwhile. So every batch is recorded here, with its key (the job and a
hash of its content) and the custom_ids it holds, BEFORE it is uploaded, and with its provider id
and input file as soon as it is created: a resumed run (`--resume`, or a worker that claims the
job) reads the open batches back, finds one whose creation it did not see by its key, polls and
ingests them, and sends none of their requests again. A batch is `ingested` once every turn with a
line in it is stored; only open batches are read back, so a resume does not grow with the job's
history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from magdi.store.graph_store import GraphStore


@dataclass
class BatchRecord:
    """One submitted batch: where it is and what it holds (`custom_ids`, in input order)."""

    job_id: str
    key: str  # "<job id>/<hash of the input file>": the node's id, and the tag a provider's batch carries
    kind: str  # "api" (a provider's Batch API) or "offline" (files for `vllm run-batch`)
    seq: int  # submission order within the job
    model: str
    endpoint: str  # the seat's declared endpoint name or base URL: with `model`, where a resume waits for it
    batch_id: str | None = None  # the provider's batch id, or the offline file's stem; None until it is created
    input_file_id: str | None = None  # the provider's file id, or the offline input file's path
    custom_ids: list[str] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # debate rounds with a line in it
    status: str = "uploading"  # then the provider's status at the last poll
    completed: int = 0  # lines answered (HTTP 200) at the last poll
    failed: int = 0  # lines failed at the last poll
    output_file_id: str | None = None
    error_file_id: str | None = None
    ingested: bool = False

    @property
    def total(self) -> int:
        return len(self.custom_ids)


_FIELDS = tuple(f.name for f in fields(BatchRecord))  # every field is a property of the node


def _record(props: dict[str, Any]) -> BatchRecord:
    return BatchRecord(**{k: props.get(k) for k in _FIELDS if k in props})


class BatchStore:
    """Named queries over a job's `:Batch` nodes (every write MERGEs on the batch's id)."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def record(self, batch: BatchRecord) -> None:
        """Store a batch about to be uploaded (a repeat is a no-op)."""
        self.store.rows("MERGE (b:Batch {id: $key}) ON CREATE SET b += $props, b.created_at = datetime() "
                        "SET b.updated_at = datetime() "
                        "WITH b MATCH (j:Job {id: $job_id}) MERGE (b)-[:OF]->(j)",
                        write=True, key=batch.key, props={k: getattr(batch, k) for k in _FIELDS}, job_id=batch.job_id)

    def update_status(self, batch: BatchRecord) -> None:
        """Its provider id and input file once created; the provider's view at the last poll: status, lines
        done and failed, result files."""
        self.store.rows("MATCH (b:Batch {id: $key}) SET b.batch_id = $batch_id, b.input_file_id = $input, "
                        "b.status = $status, b.completed = $completed, b.failed = $failed, b.output_file_id = $output, "
                        "b.error_file_id = $error, b.updated_at = datetime()",
                        write=True, key=batch.key, batch_id=batch.batch_id, input=batch.input_file_id,
                        status=batch.status, completed=batch.completed, failed=batch.failed,
                        output=batch.output_file_id, error=batch.error_file_id)

    def mark_ingested(self, keys: list[str]) -> None:
        """Every turn with a line in these batches is stored (or they were never sent): a resume need not
        read them again."""
        if keys:
            self.store.rows("UNWIND $keys AS key MATCH (b:Batch {id: key}) SET b.ingested = true, "
                            "b.updated_at = datetime()", write=True, keys=keys)

    def open_batches(self, job_id: str) -> list[BatchRecord]:
        """The job's batches not yet ingested, in submission order, with their custom_ids."""
        rows = self.store.rows("MATCH (b:Batch {job_id: $job_id}) WHERE NOT coalesce(b.ingested, false) "
                               "RETURN b {.*} AS b ORDER BY b.seq", job_id=job_id)
        return [_record(r["b"]) for r in rows]

    def count(self, job_id: str) -> int:
        rows = self.store.rows("MATCH (b:Batch {job_id: $job_id}) RETURN count(b) AS n", job_id=job_id)
        return int(rows[0]["n"])

    def summaries(self, job_id: str) -> list[dict[str, Any]]:
        """Every batch of the job, in submission order, without its custom_ids (for `magdi jobs status`)."""
        return self.summaries_of([job_id])[job_id]

    def summaries_of(self, job_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """`summaries` of each job, in one query."""
        rows = self.store.rows(
            "UNWIND $job_ids AS job_id MATCH (b:Batch {job_id: job_id}) "
            "RETURN job_id, b {.key, .batch_id, .kind, .seq, .model, .input_file_id, .rounds, "
            ".status, .completed, .failed, .output_file_id, .error_file_id, .ingested, total: size(b.custom_ids), "
            "created_at: toString(b.created_at)} AS b ORDER BY b.seq", job_ids=list(job_ids))
        found: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        for r in rows:
            found[r["job_id"]].append(r["b"])
        return found
