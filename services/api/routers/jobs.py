"""Jobs: queue a dataset slice for the generator workers, watch progress, cancel or purge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status

from magdi.mag import Job, JobStatus
from magdi.policy import DataPathError, PolicyError
from magdi.store.batches import BatchStore
from magdi.store.graph_store import InvalidCursor
from magdi.store.job_names import UnknownJob, candidate_ids
from magdi.store.jobs import JobConflict
from services.api.deps import (
    JobsDep,
    PageLimit,
    ReadAccess,
    SettingsDep,
    StoreDep,
    TrustedDep,
    WriteAccess,
    field_error,
    policy_error,
)
from services.api.mappers import batch_public, job_public, job_spec
from services.api.schemas import BatchesPublic, ErrorOut, JobCreate, JobPublic, JobsPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
JobId = Annotated[str, Path(min_length=1, max_length=200, description="job name or id (`demo` or `job-demo`)")]


def stored_job(job_id: JobId, jobs: JobsDep) -> Job:
    """The job a name or id means; a 404 listing the jobs there are when there is none."""
    for candidate in candidate_ids(job_id):
        if (job := jobs.get(candidate)) is not None:
            return job
    raise HTTPException(404, detail=str(UnknownJob(job_id, [j.id for j in jobs.list(limit=1000)])))


StoredJob = Annotated[Job, Depends(stored_job)]


@router.post("", status_code=status.HTTP_202_ACCEPTED, dependencies=[WriteAccess],
             responses={409: {"model": ErrorOut}})
def create_job(body: JobCreate, jobs: JobsDep, settings: SettingsDep, response: Response) -> JobPublic:
    """Queue a job (status `queued`); a generator worker claims and runs it.

    The panel names endpoints the operator declared (`GET /v1/endpoints`), within the server's
    caps, and `data_path` a file under the server's data root; anything else is a 422 naming the
    field. Creating a job that exists with the same configuration returns it (a retry is a no-op);
    the same name with another configuration is a 409.
    """
    try:
        spec = job_spec(body, settings.policy)
    except PolicyError as exc:
        raise policy_error(exc) from None
    except DataPathError as exc:
        raise field_error("body", "data_path", str(exc)) from None
    try:
        job = jobs.create(spec, total=body.limit or 0)
    except JobConflict as exc:
        raise HTTPException(409, detail=str(exc)) from None
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_public(job)


@router.get("", dependencies=[ReadAccess])
def list_jobs(jobs: JobsDep, limit: PageLimit, trusted: TrustedDep, status: JobStatus | None = None,
              cursor: str | None = None) -> JobsPublic:
    """Jobs, oldest first, optionally of one status, keyset-paginated (`next_cursor`).

    Without a token (open reads) URLs, key variable names, data paths and error texts are redacted.
    """
    try:
        page, next_cursor = jobs.page(status, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise field_error("query", "cursor", str(exc)) from None
    return JobsPublic(items=[job_public(j, trusted=trusted) for j in page], next_cursor=next_cursor)


@router.get("/{job_id}", dependencies=[ReadAccess], responses={404: {"model": ErrorOut}})
def get_job(job: StoredJob, trusted: TrustedDep) -> JobPublic:
    """Progress, tokens, cost and errors of one job (redacted as in the list for anonymous readers)."""
    return job_public(job, trusted=trusted)


@router.get("/{job_id}/batches", dependencies=[ReadAccess], responses={404: {"model": ErrorOut}})
def get_job_batches(job: StoredJob, store: StoreDep, trusted: TrustedDep) -> BatchesPublic:
    """The batches of a batch-mode job (`--mode batch`), in submission order, with their provider ids."""
    return BatchesPublic(items=[batch_public(b, trusted=trusted) for b in BatchStore(store).summaries(job.id)])


@router.delete("/{job_id}", dependencies=[WriteAccess], response_model=JobPublic,
               responses={204: {"description": "purged"}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
def cancel_job(job: StoredJob, jobs: JobsDep,
               purge: Annotated[bool, Query(description="delete the job node (its debates stay)")] = False,
               ) -> JobPublic | Response:
    """Cancel a queued or running job (its worker stops at the next lease renewal); `?purge=true` deletes it."""
    job_id = job.id
    if purge:
        jobs.cancel(job_id)
        jobs.delete(job_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    if not jobs.cancel(job_id):
        raise HTTPException(409, detail=f"job {job_id!r} is {job.status.value}; only queued or running jobs can be "
                                        "cancelled (use ?purge=true to delete it)")
    return job_public(jobs.get(job_id) or job)
