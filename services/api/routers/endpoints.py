"""The endpoints a job may use: what the operator declared, as names to put in a panel (no URL, no key)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import ReadAccess, SettingsDep
from services.api.schemas import EndpointPublic, EndpointsPublic, ErrorOut

router = APIRouter(prefix="/v1/endpoints", tags=["jobs"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


@router.get("", dependencies=[ReadAccess])
def list_endpoints(settings: SettingsDep) -> EndpointsPublic:
    """Declared endpoints (name, models, max_tokens cap) and the per-job caps of this server."""
    policy = settings.policy
    return EndpointsPublic(
        endpoints=[EndpointPublic(name=e.name, models=e.models, max_tokens=min(e.max_tokens, policy.job_max_tokens))
                   for e in policy.endpoints],
        job_max_questions=policy.job_max_questions, job_max_rounds=policy.job_max_rounds,
        job_max_agents=policy.job_max_agents, job_max_cost_usd=policy.job_max_cost_usd)
