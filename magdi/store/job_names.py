"""A job by its name (`demo`) or its id (`job-demo`): every entry point accepts both.

Users name jobs (`magdi generate --job demo`); the graph stores the id `job-<name>` on the `:Job`
node and on every debate of the job. Filters used to take one form or the other, and the wrong one
silently matched nothing. `resolve_job_id` turns either form into the stored id, and an unknown job
is an error that lists the jobs there are, never an empty result.

A job "exists" when a `:Job` node has the id or a debate carries it (imports keep the `job_id` of
their records, and a purged job's debates stay).
"""

from __future__ import annotations

from collections.abc import Iterable

from magdi.errors import UserError
from magdi.store.graph_store import GraphStore

ID_PREFIX = "job-"
_LISTED = 20

_FOUND = """
UNWIND $candidates AS c
RETURN c AS id, EXISTS { MATCH (:Job {id: c}) } OR EXISTS { MATCH (:Debate {job_id: c}) } AS found
"""
_KNOWN = """
CALL () {
  MATCH (j:Job) RETURN j.id AS id
  UNION
  MATCH (d:Debate) WHERE d.job_id IS NOT NULL RETURN DISTINCT d.job_id AS id
}
RETURN id ORDER BY id
"""


class UnknownJob(UserError):
    """No job has that name or id; the message lists the jobs there are."""

    def __init__(self, ref: str, known: list[str]):
        self.ref = ref
        self.known = known
        super().__init__(f"no job named {ref!r}; {describe_known(known)}")


def candidate_ids(ref: str) -> list[str]:
    """The ids `ref` may mean, the exact id first: `demo` -> [demo, job-demo]; `job-demo` -> [job-demo, job-job-demo]."""
    return [ref, f"{ID_PREFIX}{ref}"]


def display_name(job_id: str) -> str:
    """What a user types for a stored id: the name for `job-<name>`, else the id itself."""
    return job_id.removeprefix(ID_PREFIX) if job_id.startswith(ID_PREFIX) else job_id


def describe_known(known: Iterable[str]) -> str:
    names = [display_name(i) for i in known]
    if not names:
        return "there are no jobs yet"
    more = f" and {len(names) - _LISTED} more (`magdi jobs list`)" if len(names) > _LISTED else ""
    return "jobs: " + ", ".join(names[:_LISTED]) + more


def known_job_ids(store: GraphStore) -> list[str]:
    """Ids of every job: `:Job` nodes and the `job_id`s debates carry, sorted."""
    return [r["id"] for r in store.rows(_KNOWN)]


def resolve_job_id(store: GraphStore, ref: str) -> str:
    """The stored id that `ref` (a job name or id) means; UnknownJob when there is none."""
    for row in store.rows(_FOUND, candidates=candidate_ids(ref)):
        if row["found"]:
            return str(row["id"])
    raise UnknownJob(ref, known_job_ids(store))


def matches(job_id: str | None, ref: str) -> bool:
    """Whether a debate's `job_id` is the job `ref` names (for sources that cannot ask Neo4j)."""
    return job_id is not None and job_id in candidate_ids(ref)
