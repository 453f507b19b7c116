"""FastAPI dependencies as `Annotated` aliases: settings, the store, access checks, shared queries."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from magdi.config_loading import load_settings
from magdi.mag import DebateStatus
from magdi.policy import PolicyError
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.job_names import UnknownJob, resolve_job_id
from magdi.store.jobs import JobStore
from services.api import security
from services.api.settings import ApiSettings


@lru_cache
def get_settings() -> ApiSettings:
    """Read once from the environment; `create_app(settings)` and tests override this dependency."""
    return load_settings(ApiSettings)


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


def get_store(request: Request) -> GraphStore:
    """The app's one GraphStore (one driver per process, opened in the lifespan; a session per call)."""
    store: GraphStore = request.app.state.store
    return store


StoreDep = Annotated[GraphStore, Depends(get_store)]


def get_jobs(store: StoreDep) -> JobStore:
    return JobStore(store)


JobsDep = Annotated[JobStore, Depends(get_jobs)]

# auto_error=False: a missing header is ours to judge (open reads), not an automatic 403.
_bearer = HTTPBearer(auto_error=False, description="MAGDI_API_TOKEN")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _authorize(access: security.Access, request: Request, settings: ApiSettings,
               creds: HTTPAuthorizationCredentials | None) -> None:
    try:
        security.check(settings, access, creds.credentials if creds else None, request.query_params.keys())
    except security.AccessDenied as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.challenge else None
        raise HTTPException(exc.status_code, detail=exc.detail, headers=headers) from None


def require_read(request: Request, settings: SettingsDep, creds: BearerDep) -> None:
    _authorize(security.Access.READ, request, settings, creds)


def require_write(request: Request, settings: SettingsDep, creds: BearerDep) -> None:
    _authorize(security.Access.WRITE, request, settings, creds)


ReadAccess = Depends(require_read)
WriteAccess = Depends(require_write)


def trusted_caller(settings: SettingsDep, creds: BearerDep) -> bool:
    """Whether the caller may see the operator's details in jobs and debates (base URLs, key variable
    names, data paths, error texts): a token holder (a wrong token never gets this far), or anyone on
    a development server without a token. Anonymous readers (open reads) see them redacted."""
    if settings.token is None:
        return settings.insecure_dev
    return creds is not None


TrustedDep = Annotated[bool, Depends(trusted_caller)]


def field_error(location: str, name: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(422, detail=[{"loc": [location, name], "msg": message, "type": "value_error"}])


def policy_error(exc: PolicyError) -> HTTPException:
    """A 422 naming every field of the body the operator's policy refuses."""
    return HTTPException(422, detail=[{"loc": ["body", *loc], "msg": msg, "type": "value_error"}
                                      for loc, msg in exc.problems])


def page_limit(settings: SettingsDep,
               limit: Annotated[int | None, Query(ge=1, description="page size (max: MAGDI_API_MAX_PAGE_LIMIT)")]
               = None) -> int:
    if limit is None:
        return settings.default_page_limit
    if limit > settings.max_page_limit:
        raise field_error("query", "limit", f"must be <= {settings.max_page_limit}")
    return limit


PageLimit = Annotated[int, Depends(page_limit)]


def debate_filter(
    store: StoreDep,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    job: Annotated[str | None, Query(max_length=200, description="job name or id (`demo` or `job-demo`); "
                                     "an unknown job is a 404 listing the jobs")] = None,
    status: DebateStatus | None = None,
    consensus: Annotated[bool | None, Query(description="all final answers agreed")] = None,
    team_correct: bool | None = None,
    agent: Annotated[str | None, Query(max_length=200, description="an agent (seat) name on the panel")] = None,
    rounds_used: Annotated[int | None, Query(ge=0, le=1000)] = None,
    protocol: Annotated[str | None, Query(max_length=200)] = None,
) -> DebateFilter:
    try:
        job_id = resolve_job_id(store, job) if job else None
    except UnknownJob as exc:
        raise HTTPException(404, detail=str(exc)) from None
    return DebateFilter(dataset=dataset, job_id=job_id, status=status.value if status else None, consensus=consensus,
                        team_correct=team_correct, agent=agent, rounds_used=rounds_used, protocol=protocol)


FilterDep = Annotated[DebateFilter, Depends(debate_filter)]
