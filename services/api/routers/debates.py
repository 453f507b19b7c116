"""Debates: start one (a one-question job), list them with filters, read or delete a whole MAG."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from magdi import ids
from magdi.policy import PolicyError
from magdi.store.graph_store import InvalidCursor
from magdi.store.jobs import JobConflict
from services.api.deps import (
    FilterDep,
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
from services.api.mappers import debate_public, debate_spec
from services.api.schemas import (
    DebateAccepted,
    DebateCreate,
    DebatePublic,
    DebatesPage,
    DebateSummary,
    ErrorOut,
)

router = APIRouter(prefix="/v1/debates", tags=["debates"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
DebateId = Annotated[str, Path(min_length=1, max_length=200, description="debate id, e.g. d-0123456789abcdef")]


@router.post("", status_code=status.HTTP_202_ACCEPTED, dependencies=[WriteAccess],
             responses={409: {"model": ErrorOut}})
def create_debate(body: DebateCreate, jobs: JobsDep, settings: SettingsDep, response: Response) -> DebateAccepted:
    """Queue a debate on ONE question: a job with one inline question, run by a generator worker.

    The panel names endpoints the operator declared (`GET /v1/endpoints`), within the server's caps.
    Poll `job_url` for progress; the MAG appears at `debate_url` once the worker stored it.
    """
    try:
        spec = debate_spec(body, settings.policy)
    except PolicyError as exc:
        raise policy_error(exc) from None
    try:
        job = jobs.create(spec, total=1)
    except JobConflict as exc:
        raise HTTPException(409, detail=str(exc)) from None
    question = spec.questions[0]
    debate_id = ids.debate_id(job.id, question.id, question.qid)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return DebateAccepted(debate_id=debate_id, job_id=job.id, status=job.status, job_url=f"/v1/jobs/{job.id}",
                          debate_url=f"/v1/debates/{debate_id}")


@router.get("", dependencies=[ReadAccess], responses={404: {"model": ErrorOut, "description": "unknown job"},
                                                     422: {"model": ErrorOut}})
def list_debates(store: StoreDep, flt: FilterDep, limit: PageLimit, settings: SettingsDep, cursor: str | None = None,
                 q: Annotated[str | None, Query(max_length=200, description=(
                     "search: question text, debate id or record id contains this (any case). A bounded scan: "
                     "one request reads at most MAGDI_API_SEARCH_WINDOW debates, so a page may hold fewer "
                     "than `limit` items and still have a next_cursor"))] = None) -> DebatesPage:
    """Debate summaries (with the question text) in id order, filtered, keyset-paginated (`next_cursor`)."""
    try:
        page = store.list_debates(flt, limit=limit, cursor=cursor, search=q, search_window=settings.search_window)
    except InvalidCursor as exc:
        raise field_error("query", "cursor", str(exc)) from None
    return DebatesPage(items=[DebateSummary.model_validate(i) for i in page.items], next_cursor=page.next_cursor)


@router.get("/{debate_id}", dependencies=[ReadAccess], responses={404: {"model": ErrorOut}})
def get_debate(debate_id: DebateId, store: StoreDep, trusted: TrustedDep) -> DebatePublic:
    """The whole MAG: question, nodes (responses), INFORMS edges, team answer and metrics."""
    debate = store.get_debate(debate_id)
    if debate is None:
        raise HTTPException(404, detail=f"no debate {debate_id!r}")
    return debate_public(debate, trusted=trusted)


@router.delete("/{debate_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[WriteAccess],
               responses={404: {"model": ErrorOut}})
def delete_debate(debate_id: DebateId, store: StoreDep) -> None:
    """Delete the MAG and its responses (and its question when no other debate uses it)."""
    if not store.delete_debate(debate_id):
        raise HTTPException(404, detail=f"no debate {debate_id!r}")
