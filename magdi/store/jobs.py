"""Jobs in Neo4j: queued by the API or CLI, claimed by generator workers under a lease.

A claim takes the job node's write lock before it re-checks the status, so two workers racing for
the same job serialise on the lock and the loser sees it already leased. A worker that dies stops
renewing; once `lease_until` passes, any worker may claim the job and resume it.

Lease times are computed by Neo4j (`datetime() + duration`), so expiry is judged on one clock
whatever the workers' clocks say; a worker measures its own remaining lease with a monotonic
clock from the moment it sent the renewal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import neo4j
from pydantic import ValidationError

from magdi.errors import UserError
from magdi.mag import RUN_COUNTERS, Job, JobSpec, JobStatus
from magdi.store.graph_store import GraphStore, decode_cursor, encode_cursor


class JobConflict(UserError):
    """A job of that name exists with a different configuration."""


class InvalidJobSpec(UserError):
    """A stored job whose spec the current schema refuses (written by something other than magdi)."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id}: the stored spec is invalid: {reason}")
        self.job_id = job_id
        self.reason = reason


def _job_from(props: dict[str, Any]) -> Job:
    def native(v: Any) -> Any:
        return v.to_native() if hasattr(v, "to_native") else v

    try:
        spec = JobSpec.model_validate_json(props["spec_json"])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidJobSpec(props["id"], f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    return Job(
        id=props["id"],
        spec=spec,
        status=props["status"],
        total=props.get("total") or 0,
        done=props.get("done") or 0,
        failed=props.get("failed") or 0,
        tokens_in=props.get("tokens_in") or 0,
        tokens_out=props.get("tokens_out") or 0,
        cost_usd=props.get("cost_usd") or 0.0,
        errors=list(props.get("errors") or []),
        lease_owner=props.get("lease_owner"),
        lease_until=native(props.get("lease_until")),
        created_at=native(props["created_at"]),
        updated_at=native(props["updated_at"]),
        **{k: props.get(k) for k in RUN_COUNTERS},
    )


class JobStore:
    def __init__(self, store: GraphStore):
        self.store = store

    def create(self, spec: JobSpec, *, total: int = 0, status: JobStatus = JobStatus.QUEUED,
               owner: str | None = None, lease_s: float | None = None) -> Job:
        """Create the job, or return the existing one with the same config (resume is a no-op create).

        With `owner` and `lease_s` a new job is created already running and leased to `owner`
        (a CLI run that executes the job it creates, so no worker can grab it in between).
        """
        spec_json = spec.model_dump_json()
        if owner is not None:
            status = JobStatus.RUNNING

        def tx(t: neo4j.ManagedTransaction) -> dict[str, Any]:
            rec = t.run(
                """
                MERGE (j:Job {id: $id})
                ON CREATE SET j.name = $name, j.dataset = $dataset, j.spec_json = $spec_json,
                              j.config_hash = $hash, j.status = $status, j.total = $total,
                              j.done = 0, j.failed = 0, j.tokens_in = 0, j.tokens_out = 0, j.cost_usd = 0.0,
                              j.errors = [], j.created_at = datetime(), j.updated_at = datetime(),
                              j.lease_owner = $owner,
                              j.lease_until = CASE WHEN $owner IS NULL THEN null
                                              ELSE datetime() + duration({milliseconds: $lease_ms}) END
                RETURN j {.*} AS j
                """,
                id=spec.id, name=spec.name, dataset=spec.dataset, spec_json=spec_json,
                hash=spec.config_hash, status=status.value, total=total, owner=owner,
                lease_ms=int((lease_s or 0) * 1000),
            ).single()
            return rec["j"]

        props = self.store._run(tx, write=True)
        if props["config_hash"] != spec.config_hash:
            raise JobConflict(
                f"job {spec.name!r} already exists with a different configuration "
                f"(stored {props['config_hash']}, given {spec.config_hash}); choose another --job name"
            )
        return _job_from(props)

    def get(self, job_id: str) -> Job | None:
        rec = self.store._run(lambda t: t.run("MATCH (j:Job {id: $id}) RETURN j {.*} AS j", id=job_id).single())
        return _job_from(rec["j"]) if rec else None

    def list(self, status: JobStatus | None = None, limit: int | None = None) -> list[Job]:
        """Jobs, oldest first (all of them unless `limit`)."""
        jobs: list[Job] = []
        cursor = None
        while limit is None or len(jobs) < limit:
            page, cursor = self.page(status, limit=min(500, limit - len(jobs)) if limit else 500, cursor=cursor)
            jobs.extend(page)
            if cursor is None:
                break
        return jobs

    def page(self, status: JobStatus | None = None, *, limit: int = 100,
             cursor: str | None = None) -> tuple[list[Job], str | None]:
        """One page of jobs, oldest first, keyset-paginated on (created_at, id); returns (jobs, next cursor).

        The cursor carries created_at as Neo4j's own string (nanoseconds), not Python's datetime
        (microseconds), so jobs created in the same microsecond are neither skipped nor repeated.
        """
        ts, after = decode_cursor(cursor, parts=2) if cursor else (None, None)
        rows = [(r["j"], r["ts"]) for r in self.store.rows(
            "MATCH (j:Job) WHERE ($status IS NULL OR j.status = $status) "
            "AND ($ts IS NULL OR j.created_at > datetime($ts) "
            "     OR (j.created_at = datetime($ts) AND j.id > $after)) "
            "RETURN j {.*} AS j, toString(j.created_at) AS ts ORDER BY j.created_at, j.id LIMIT $limit",
            status=status.value if status else None, ts=ts, after=after, limit=limit + 1,
        )]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][1], rows[-1][0]["id"]) if more and rows else None
        return [_job_from(j) for j, _ in rows], next_cursor

    def claim(self, worker: str, lease_s: float, job_id: str | None = None, *,
              take_over_from: str | None = None, any_status: bool = False) -> Job | None:
        """Lease the oldest claimable job to `worker`: queued, or running with an expired lease.

        `take_over_from`: also claim it while leased to that owner (a worker known to be dead,
        e.g. a killed process on this host), without waiting for the lease to expire.
        `any_status` (with `job_id`): also claim a complete/failed/cancelled job (explicit resume);
        a job leased to a live worker is never taken.
        """
        claimable = """
            (j.status = 'queued'
             OR (j.status = 'running' AND (j.lease_until IS NULL OR j.lease_until < datetime()))
             OR (j.status = 'running' AND j.lease_owner IN [$worker, $take_over])
             OR ($any_status AND j.status IN ['complete', 'failed', 'cancelled']))
        """

        def tx(t: neo4j.ManagedTransaction) -> dict[str, Any] | None:
            rec = t.run(
                f"""
                MATCH (j:Job)
                WHERE ($job_id IS NULL OR j.id = $job_id) AND {claimable}
                WITH j ORDER BY j.created_at LIMIT 1
                SET j._lock = true
                WITH j
                WHERE {claimable}
                SET j.status = 'running', j.lease_owner = $worker,
                    j.lease_until = datetime() + duration({{milliseconds: $lease_ms}}),
                    j.updated_at = datetime()
                REMOVE j._lock
                RETURN j {{.*}} AS j
                """,
                job_id=job_id, worker=worker, take_over=take_over_from, any_status=any_status and job_id is not None,
                lease_ms=int(lease_s * 1000),
            ).single()
            return rec["j"] if rec else None

        props = self.store._run(tx, write=True)
        if not props:
            return None
        try:
            return _job_from(props)
        except InvalidJobSpec as exc:  # never run what the schema refuses; mark it so it is not claimed again
            self.finish(exc.job_id, worker, JobStatus.FAILED, [str(exc)])
            raise

    def renew(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend the lease; False if another worker took the job (this one must stop)."""
        rec = self.store._run(
            lambda t: t.run(
                "MATCH (j:Job {id: $id}) WHERE j.lease_owner = $worker AND j.status = 'running' "
                "SET j.lease_until = datetime() + duration({milliseconds: $lease_ms}) RETURN j.id AS id",
                id=job_id, worker=worker, lease_ms=int(lease_s * 1000),
            ).single(),
            write=True,
        )
        return rec is not None

    def release(self, job_id: str, worker: str) -> bool:
        """Give an unfinished job back to the queue (a worker shutting down); False if not ours."""
        rec = self.store._run(
            lambda t: t.run(
                "MATCH (j:Job {id: $id}) WHERE j.lease_owner = $worker AND j.status = 'running' "
                "SET j.status = 'queued', j.lease_owner = null, j.lease_until = null, j.updated_at = datetime() "
                "RETURN j.id AS id",
                id=job_id, worker=worker,
            ).single(),
            write=True,
        )
        return rec is not None

    def update(self, job_id: str, **fields: Any) -> None:
        """Set counters/status (`status`, `total`, `done`, `failed`, tokens, cost, `errors`)."""
        props = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in fields.items()}
        self.store._run(
            lambda t: t.run(
                "MATCH (j:Job {id: $id}) SET j += $props, j.updated_at = datetime()", id=job_id, props=props
            ).consume(),
            write=True,
        )

    def refresh_counters(self, job_id: str) -> Job | None:
        """Recompute done/failed/tokens/cost from the stored debates (the source of truth)."""
        self.store._run(
            lambda t: t.run(
                """
                MATCH (j:Job {id: $id})
                OPTIONAL MATCH (d:Debate {job_id: $id})
                WITH j, collect(d) AS ds
                SET j.done = size([d IN ds WHERE d.status = 'complete']),
                    j.failed = size([d IN ds WHERE d.status = 'failed']),
                    j.tokens_in = reduce(s = 0, d IN ds | s + coalesce(d.tokens_in, 0)),
                    j.tokens_out = reduce(s = 0, d IN ds | s + coalesce(d.tokens_out, 0)),
                    j.cost_usd = reduce(s = 0.0, d IN ds | s + coalesce(d.cost_usd, 0.0)),
                    j.updated_at = datetime()
                """,
                id=job_id,
            ).consume(),
            write=True,
        )
        return self.get(job_id)

    def add_run_counters(self, job_id: str, counts: Mapping[str, float]) -> None:
        """Add one run's endpoint and store counts (`magdi.mag.RUN_COUNTERS`) to the job's totals."""
        unknown = set(counts) - set(RUN_COUNTERS)
        if unknown:  # the names become property names in the query
            raise ValueError(f"not job run counters: {sorted(unknown)}; expected some of {list(RUN_COUNTERS)}")
        sets = ", ".join(f"j.{k} = coalesce(j.{k}, 0) + $counts.{k}" for k in counts)
        if not sets:
            return
        self.store._run(
            lambda t: t.run(f"MATCH (j:Job {{id: $id}}) SET {sets}", id=job_id, counts=dict(counts)).consume(),
            write=True,
        )

    def finish(self, job_id: str, worker: str, status: JobStatus, errors: list[str] | None = None) -> bool:
        """Record the final status; False (and no change) if the job is no longer ours (lost, cancelled)."""
        rec = self.store._run(
            lambda t: t.run(
                "MATCH (j:Job {id: $id}) WHERE j.status = 'running' "
                "AND (j.lease_owner = $worker OR j.lease_owner IS NULL) "
                "SET j.status = $status, j.lease_owner = null, j.lease_until = null, "
                "j.errors = $errors, j.updated_at = datetime() RETURN j.id AS id",
                id=job_id, worker=worker, status=status.value, errors=errors or [],
            ).single(),
            write=True,
        )
        return rec is not None

    def cancel(self, job_id: str) -> bool:
        rec = self.store._run(
            lambda t: t.run(
                "MATCH (j:Job {id: $id}) WHERE j.status IN ['queued', 'running'] "
                "SET j.status = 'cancelled', j.updated_at = datetime() RETURN j.id AS id",
                id=job_id,
            ).single(),
            write=True,
        )
        return rec is not None

    def delete(self, job_id: str) -> bool:
        """Delete the job node and its batch records (`:Batch`); its debates stay."""
        summary = self.store._run(
            lambda t: t.run("MATCH (j:Job {id: $id}) OPTIONAL MATCH (b:Batch {job_id: $id}) DETACH DELETE b, j",
                            id=job_id).consume(), write=True
        )
        return summary.counters.nodes_deleted > 0


def job_summary(job: Job) -> dict[str, Any]:
    """A JSON-ready view without the panel's internals."""
    data = json.loads(job.model_dump_json())
    data["progress"] = job.progress
    return data
