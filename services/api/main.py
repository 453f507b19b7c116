"""The FastAPI app factory: `create_app(settings)` wires routers, middleware and the Neo4j lifespan.

No module-level app and no global state: each app opens ONE Neo4j driver in its lifespan (the
driver pools connections and is thread-safe; the store opens a session per unit of work) and
keeps it, its metrics registry and its settings on `app.state`. `magdi serve` builds one app;
tests build as many as they need.

    uvicorn --factory services.api.main:create_app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from neo4j.exceptions import DriverError, Neo4jError
from starlette.concurrency import run_in_threadpool

from magdi.store.connection import open_driver
from magdi.store.graph_store import GraphStore
from services.api import errors
from services.api.deps import get_settings
from services.api.middleware import RequestContextMiddleware
from services.api.observability import Metrics
from services.api.routers import cypher, debates, endpoints, exports, health, imports, jobs, stats, viewer
from services.api.settings import ApiSettings
from services.api.throttle import CypherGate

log = logging.getLogger(__name__)
API_VERSION = "1.0.0"
DOCS_STATIC = "/docs-static"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ApiSettings = app.state.settings
    # verify=False: an API that starts before Neo4j is up serves /healthz, and /readyz says 503.
    driver = open_driver(settings.neo4j, verify=False)
    store = GraphStore(driver, database=settings.neo4j.neo4j_database, query_timeout_s=settings.neo4j.query_timeout_s)
    try:
        await run_in_threadpool(store.ensure_schema)
    except (DriverError, Neo4jError, OSError) as exc:
        log.warning("Neo4j not reachable at startup (%s); schema not checked, /readyz reports 503",
                    exc.__class__.__name__)
    app.state.store = store
    app.state.health_limiter = anyio.CapacityLimiter(2)  # /readyz probes: never queued behind data requests
    log.info("API ready", extra={"neo4j": settings.neo4j.neo4j_uri or "managed", "open_reads": settings.open_reads,
                                 "writes_enabled": settings.writes_enabled})
    try:
        yield
    finally:
        driver.close()


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the app; `settings` default to the environment (`MAGDI_API_*`, `MAGDI_NEO4J_*`)."""
    settings = settings or get_settings()
    # FastAPIOffline: a plain FastAPI app whose /docs and /redoc load Swagger UI / ReDoc from files
    # shipped in the fastapi-offline package (served under /docs-static), not from a CDN.
    app = FastAPIOffline(title="magdi API", version=API_VERSION, lifespan=lifespan, static_url=DOCS_STATIC,
                         description="Multi-agent debates as interaction graphs (MAGs) in Neo4j. See docs/api.md.")
    app.state.settings = settings
    app.state.metrics = Metrics.create()
    app.state.cypher_gate = CypherGate(settings.cypher_max_concurrent, settings.cypher_rate_per_min)
    app.dependency_overrides[get_settings] = lambda: settings

    for module in (debates, jobs, endpoints, cypher, exports, imports, stats, health, viewer):
        app.include_router(module.router)
    app.mount("/viewer/static", StaticFiles(directory=viewer.STATIC_DIR), name="viewer-static")

    errors.install(app)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                           expose_headers=["X-Request-ID"])

    def body_limit(path: str) -> int:
        return settings.max_body_bytes if path.startswith("/v1/imports") else settings.max_json_bytes

    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics, body_limit=body_limit)
    # outermost: a request for another Host (DNS rebinding of a localhost API) is a 400 before anything runs
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    return app
