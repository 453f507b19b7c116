"""Liveness, readiness and metrics for orchestrators and Prometheus (no auth: nothing in them is data)."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from neo4j.exceptions import DriverError, Neo4jError
from prometheus_client import CONTENT_TYPE_LATEST

from services.api.deps import StoreDep
from services.api.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process serves requests (does not look at Neo4j: a DB outage must not restart the API).

    Async on purpose: it answers on the event loop even while every worker thread is busy.
    """
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health}})
async def readyz(store: StoreDep, request: Request, response: Response) -> Health:
    """Neo4j answers; 503 otherwise, so a load balancer stops sending traffic here.

    The probe runs on its own small thread allowance, not the pool that data requests share.
    """
    try:
        await anyio.to_thread.run_sync(store.driver.verify_connectivity, limiter=request.app.state.health_limiter)
    except (DriverError, Neo4jError, OSError) as exc:
        log.warning("not ready: %s", exc.__class__.__name__)
        response.status_code = 503
        return Health(status="unavailable", detail=f"Neo4j is not reachable ({exc.__class__.__name__})")
    return Health(status="ready")


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
