"""Domain objects to response bodies, and request bodies to job specs (pure functions, no I/O)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from magdi import ids
from magdi.answers import task_for_dataset
from magdi.mag import Debate, Job, JobSpec, ParseStatus, Question
from magdi.store.jobs import job_summary
from services.api.schemas import (
    DebateCreate,
    DebateMetrics,
    DebatePublic,
    EdgePublic,
    JobCreate,
    JobPublic,
    NodePublic,
    QuestionPublic,
)


class BadPath(ValueError):
    """data_path lies outside MAGDI_API_DATA_ROOT."""


# -- requests -> specs -----------------------------------------------------------------------------
def question_from(body: DebateCreate) -> Question:
    q = body.question
    return Question(
        dataset=q.dataset,
        qid=q.qid or ids.text_qid(q.text),
        text=q.text,
        task=q.task or task_for_dataset(q.dataset),
        gold_answer=q.gold_answer,
        options=q.options,
        gold_explanation=q.gold_explanation,
    )


def debate_spec(body: DebateCreate) -> JobSpec:
    """A one-question job. Its default name derives from the request, so a retried POST is a no-op."""
    question = question_from(body)
    panel, protocol = body.panel.model_dump(exclude_none=True), body.protocol.model_dump()
    name = body.name or f"debate-{ids.digest(question.model_dump(mode='json'), panel, protocol)}"
    return JobSpec(name=name, dataset=question.dataset, questions=[question], panel=panel, protocol=protocol)


def resolve_data_path(path: str, root: Path | None) -> str:
    """Relative paths are taken under `root`; with a root, nothing outside it is accepted."""
    if root is None:
        return path
    full = os.path.normpath(root / path)  # root / absolute = absolute: checked the same way
    base = os.path.normpath(root)
    if os.path.commonpath([full, base]) != base:
        raise BadPath(f"must lie under the server's data root {base}")
    return full


def job_spec(body: JobCreate, root: Path | None) -> JobSpec:
    return JobSpec(name=body.name, dataset=body.dataset, data_path=resolve_data_path(body.data_path, root),
                   data_format=body.format, offset=body.offset, limit=body.limit,
                   panel=body.panel.model_dump(exclude_none=True), protocol=body.protocol.model_dump())


# -- domain -> responses ---------------------------------------------------------------------------
def job_public(job: Job) -> JobPublic:
    data: dict[str, Any] = job_summary(job)
    return JobPublic(name=job.spec.name, dataset=job.spec.dataset, **{k: v for k, v in data.items() if k != "spec"},
                     spec=json.loads(job.spec.model_dump_json()))


def debate_public(d: Debate) -> DebatePublic:
    debate_id = d.id  # once: an imported MAG's id hashes its content
    nodes = [
        NodePublic(id=ids.response_id(debate_id, r.agent, r.round), label=r.label,
                   **r.model_dump(exclude={"agent", "round"}), agent=r.agent, round=r.round)
        for r in d.sorted_responses()
    ]
    edges = [
        EdgePublic(source=ids.response_id(debate_id, e.source_agent, e.source_round),
                   target=ids.response_id(debate_id, e.target_agent, e.target_round), same_agent=e.same_agent,
                   **e.model_dump())
        for e in d.edges
    ]
    q = d.question
    return DebatePublic(
        id=debate_id, question=QuestionPublic(id=q.id, **q.model_dump(exclude={"extra"})), job_id=d.job_id,
        protocol=d.protocol, panel=d.panel, config_hash=d.config_hash, status=d.status, team_answer=d.team_answer,
        team_correct=d.team_correct, majority_answer=d.majority_answer, consensus=d.consensus,
        rounds_used=d.rounds_used, error=d.error, created_at=d.created_at, nodes=nodes, edges=edges,
        metrics=metrics(d),
    )


def metrics(d: Debate) -> DebateMetrics:
    status = [r.parse_status for r in d.responses]
    last = d.rounds() - 1
    final = [r.correct for r in d.responses if r.round == last and r.parse_status is ParseStatus.VALID
             and r.correct is not None]
    return DebateMetrics(
        nodes=len(d.responses), edges=len(d.edges), rounds=d.rounds(),
        valid=status.count(ParseStatus.VALID), invalid=status.count(ParseStatus.INVALID),
        absent=status.count(ParseStatus.ABSENT),
        correct=sum(1 for r in d.responses if r.correct is True),
        incorrect=sum(1 for r in d.responses if r.correct is False),
        final_round_accuracy=(sum(final) / len(final)) if final else None,
        tokens_in=d.tokens_in, tokens_out=d.tokens_out, cost_usd=d.cost_usd,
    )
