"""Domain objects to response bodies, and request bodies to job specs.

Pure functions except `job_spec`, which reads the first rows of the data file it is asked to queue.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from magdi import ids
from magdi.answers import task_for_dataset
from magdi.datasets import DatasetError, default_format, load_questions
from magdi.mag import Agent, Debate, Job, JobSpec, ParseStatus, Question
from magdi.panel import PanelConfig
from magdi.policy import DataPathError, OperatorPolicy, PolicyError, Who
from magdi.protocol import ProtocolConfig
from magdi.store.jobs import job_summary
from services.api.schemas import (
    BatchPublic,
    DebateCreate,
    DebateMetrics,
    DebatePublic,
    EdgePublic,
    JobCreate,
    JobPublic,
    NodePublic,
    QuestionPublic,
)

log = logging.getLogger(__name__)
REDACTED = "<redacted>"
REDACTED_ERROR = "<redacted: send the API token to read job errors>"


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


def debate_spec(body: DebateCreate, policy: OperatorPolicy) -> JobSpec:
    """A one-question job. Its default name derives from the request, so a retried POST is a no-op.

    PolicyError when the panel or protocol asks for what the operator does not offer.
    """
    check_panel(body.panel, body.protocol, policy, questions=1)
    question = question_from(body)
    panel, protocol = body.panel.model_dump(mode="json"), body.protocol.model_dump(mode="json")
    name = body.name or f"debate-{ids.digest(question.model_dump(mode='json'), panel, protocol)}"
    return JobSpec(name=name, dataset=question.dataset, questions=[question], panel=body.panel,
                   protocol=body.protocol)


def job_spec(body: JobCreate, policy: OperatorPolicy) -> JobSpec:
    """A dataset slice under the operator's data root, checked before it is queued.

    The data path is stored relative to the root (every worker resolves it under its own root
    again); one row is read to check the format, and without a `limit` the rows are counted up to
    the cap. PolicyError / DataPathError (generic: it never says whether a file exists elsewhere).
    """
    check_panel(body.panel, body.protocol, policy, questions=body.limit)
    real = policy.confine(body.data_path)  # once: for a folder it walks every file
    data_path = policy.stored_path(real)
    fmt = body.format or default_format(body.dataset)
    cap = policy.job_max_questions
    try:
        found = load_questions(real, fmt, dataset=body.dataset, offset=body.offset,
                               limit=cap + 1 if body.limit is None else 1)
    except DatasetError as exc:
        log.info("POST /v1/jobs: %s does not load as %s: %s", data_path, fmt, exc)
        raise DataPathError(f"could not be read as {fmt} from offset {body.offset}") from None
    if len(found) > cap:
        raise PolicyError([(("limit",), f"the file has more than {cap} questions from offset {body.offset}, the "
                                       "most one job may have on this server; pass a limit")])
    return JobSpec(name=body.name, dataset=body.dataset, data_path=data_path, data_format=body.format,
                   offset=body.offset, limit=body.limit, panel=body.panel, protocol=body.protocol,
                   mode=body.mode)


def check_panel(panel: PanelConfig, protocol: ProtocolConfig, policy: OperatorPolicy, *,
                questions: int | None) -> None:
    """The caller's panel on declared endpoints within the caps; its topology names its own agents."""
    policy.bind(panel, Who.CALLER)
    policy.check_caps(questions=questions, max_rounds=protocol.max_rounds)
    try:
        protocol.check_agents(panel.agent_names)
    except ValueError as exc:
        raise PolicyError([(("protocol", "topology"), str(exc))]) from None


# -- domain -> responses ---------------------------------------------------------------------------
def job_public(job: Job, *, trusted: bool = True) -> JobPublic:
    """A job as the API shows it; for an anonymous reader (`trusted=False`) without the operator's
    details: base URLs, key variable names, data paths, demo folders and error texts are redacted."""
    data: dict[str, Any] = job_summary(job)
    spec = json.loads(job.spec.model_dump_json())
    if not trusted:
        for agent in spec["panel"]["agents"]:
            for key in ("base_url", "api_key_env"):
                if agent.get(key) is not None:
                    agent[key] = REDACTED
        if spec.get("data_path") is not None:
            spec["data_path"] = REDACTED
        if spec["protocol"].get("demos_source") is not None:
            spec["protocol"]["demos_source"] = REDACTED
        data["errors"] = [REDACTED_ERROR for _ in data["errors"]]
    return JobPublic(name=job.spec.name, dataset=job.spec.dataset, **{k: v for k, v in data.items() if k != "spec"},
                     spec=spec)


def batch_public(summary: dict[str, Any], *, trusted: bool = True) -> BatchPublic:
    """A batch as the API shows it; anonymous readers do not see file ids (an offline one is a path)."""
    batch = BatchPublic(**summary)  # BatchStore.record writes every field, so none is missing
    if trusted:
        return batch
    hidden = {k: REDACTED for k in ("input_file_id", "output_file_id", "error_file_id") if getattr(batch, k)}
    return batch.model_copy(update=hidden)


def debate_public(d: Debate, *, trusted: bool = True) -> DebatePublic:
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
        protocol=d.protocol, panel=d.panel if trusted else [_public_agent(a) for a in d.panel], config_hash=d.config_hash, status=d.status, team_answer=d.team_answer,
        team_correct=d.team_correct, majority_answer=d.majority_answer, consensus=d.consensus,
        rounds_used=d.rounds_used, error=d.error, created_at=d.created_at, nodes=nodes, edges=edges,
        metrics=metrics(d),
    )


def _public_agent(agent: Agent) -> Agent:
    """A declared endpoint is shown by its name; an inline base URL only to trusted callers."""
    if agent.endpoint and "://" in agent.endpoint:
        return agent.model_copy(update={"endpoint": REDACTED})
    return agent


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
