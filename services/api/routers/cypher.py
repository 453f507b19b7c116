"""Read-only Cypher over HTTP; the guards live in `magdi.store.cypher` (shared with `magdi cypher`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from magdi.store.cypher import CypherRejected, run_readonly
from services.api.deps import SettingsDep, StoreDep, WriteAccess
from services.api.schemas import CypherIn, CypherOut, ErrorOut
from services.api.throttle import CypherGate, Throttled

router = APIRouter(prefix="/v1/cypher", tags=["cypher"],
                   responses={400: {"model": ErrorOut}, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              429: {"model": ErrorOut}})


@router.post("", dependencies=[WriteAccess])
def run_cypher(body: CypherIn, store: StoreDep, settings: SettingsDep, request: Request) -> CypherOut:
    """Run one read-only query. Writes, LOAD CSV, admin commands and most procedures are a 400 saying why.

    A leading EXPLAIN returns the plan only; PROFILE returns the rows and the profiled plan.
    Always needs the token, even with open reads: a query can read every property of the graph.
    More than `MAGDI_API_CYPHER_MAX_CONCURRENT` queries at once, or more than
    `MAGDI_API_CYPHER_RATE_PER_MIN` from one client, is a 429 with Retry-After.
    """
    gate: CypherGate = request.app.state.cypher_gate
    try:
        with gate.admit(request.client.host if request.client else "unknown"):
            return _run(body, store, settings)
    except Throttled as exc:
        raise HTTPException(429, detail=exc.detail, headers={"Retry-After": str(int(exc.retry_after_s))}) from None


def _run(body: CypherIn, store: StoreDep, settings: SettingsDep) -> CypherOut:
    try:
        result = run_readonly(store.driver, body.query, body.parameters, database=store.database,
                              timeout_s=settings.cypher_timeout_s, max_rows=settings.cypher_max_rows,
                              max_bytes=settings.cypher_max_bytes)
    except CypherRejected as exc:
        raise HTTPException(400, detail=str(exc)) from None
    return CypherOut(columns=result.columns, rows=result.rows, row_count=len(result.rows), truncated=result.truncated,
                     plan=result.plan)
