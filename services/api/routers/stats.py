"""Aggregate numbers over (filtered) debates: agreement, rounds, accuracy per team and agent, cost."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from magdi.rounding import round_floats
from services.api.deps import FilterDep, ReadAccess, StoreDep
from services.api.schemas import ErrorOut, StatsPublic

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


@router.get("", dependencies=[ReadAccess], responses={404: {"model": ErrorOut, "description": "unknown job"}})
def get_stats(store: StoreDep, flt: FilterDep) -> StatsPublic:
    """The same numbers as `magdi stats --format json`, e.g. `?dataset=gsm8k&job=demo`."""
    return StatsPublic.model_validate(round_floats(asdict(store.stats(flt))))
