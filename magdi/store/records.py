"""Conversion between the domain model and flat Neo4j property maps.

Neo4j properties hold scalars and lists only, so nested values (panel, extra fields) travel as JSON
strings. Keeping both directions in one module is what makes the store's round trip exact.
"""

from __future__ import annotations

import json
from typing import Any

from magdi.mag import Agent, Debate, Edge, Question, Response, canonical

_RESPONSE_FIELDS = list(Response.model_fields)


def question_row(q: Question) -> dict[str, Any]:
    return {
        "id": q.id,
        "dataset": q.dataset,
        "qid": q.qid,
        "text": q.text,
        "task": q.task.value,
        "gold_answer": q.gold_answer,
        "options": list(q.options),
        "gold_explanation": q.gold_explanation,
        "extra_json": json.dumps(q.extra, ensure_ascii=False) if q.extra else None,
    }


def question_from(props: dict[str, Any]) -> Question:
    return Question(
        dataset=props["dataset"],
        qid=props["qid"],
        text=props["text"],
        task=props["task"],
        gold_answer=props.get("gold_answer"),
        options=list(props.get("options") or []),
        gold_explanation=props.get("gold_explanation"),
        extra=json.loads(props["extra_json"]) if props.get("extra_json") else {},
    )


def agent_row(a: Agent) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "model": a.model, "endpoint": a.endpoint}


def debate_row(d: Debate) -> dict[str, Any]:
    """The Debate node's properties, including roll-ups that Cypher users filter on."""
    return {
        "id": d.id,
        "job_id": d.job_id,
        "dataset": d.question.dataset,
        "question_id": d.question.id,
        "protocol": d.protocol,
        "config_hash": d.config_hash,
        "status": d.status.value,
        "team_answer": d.team_answer,
        "team_correct": d.team_correct,
        "majority_answer": d.majority_answer,
        "consensus": d.consensus,
        "rounds_used": d.rounds_used,
        "error": d.error,
        "created_at": d.created_at,
        "panel_json": json.dumps([a.model_dump() for a in d.panel], ensure_ascii=False),
        "agents": [a.name for a in d.panel],
        "n_agents": len(d.panel),
        "n_responses": len(d.responses),
        "tokens_in": d.tokens_in,
        "tokens_out": d.tokens_out,
        "cost_usd": d.cost_usd,
    }


def response_row(d: Debate, r: Response) -> dict[str, Any]:
    props = r.model_dump(mode="json")
    props["id"] = d.response_id(r.agent, r.round)
    props["debate_id"] = d.id
    props["label"] = r.label
    agent = next(a for a in d.panel if a.name == r.agent)
    return {"id": props["id"], "debate_id": d.id, "agent_id": agent.id, "props": props}


def edge_row(d: Debate, e: Edge) -> dict[str, Any]:
    return {
        "src": d.response_id(e.source_agent, e.source_round),
        "dst": d.response_id(e.target_agent, e.target_round),
        "same_agent": e.same_agent,
        "debate_id": d.id,
    }


def response_from(props: dict[str, Any]) -> Response:
    return Response(**{k: props.get(k) for k in _RESPONSE_FIELDS if props.get(k) is not None})


def debate_from(
    d: dict[str, Any], q: dict[str, Any], responses: list[dict[str, Any]], edges: list[list[Any]]
) -> Debate:
    """Rebuild a Debate from what `graph_store` reads (edges as [src_agent, src_round, dst_agent, dst_round])."""
    created = d.get("created_at")
    if created is not None and hasattr(created, "to_native"):
        created = created.to_native()
    panel = [Agent(**a) for a in json.loads(d["panel_json"])]
    debate = Debate(
        question=question_from(q),
        job_id=d.get("job_id"),
        protocol=d["protocol"],
        panel=panel,
        config_hash=d.get("config_hash"),
        status=d["status"],
        responses=[response_from(r) for r in responses],
        edges=[
            Edge(source_agent=e[0], source_round=e[1], target_agent=e[2], target_round=e[3]) for e in edges
        ],
        team_answer=d.get("team_answer"),
        team_correct=d.get("team_correct"),
        majority_answer=d.get("majority_answer"),
        consensus=d.get("consensus"),
        rounds_used=d.get("rounds_used"),
        error=d.get("error"),
        **({"created_at": created} if created is not None else {}),
    )
    return canonical(debate)
