"""Conversion between the domain model and flat Neo4j property maps.

Neo4j properties hold scalars and lists only, so nested values (panel, extra fields, outputs) travel
as JSON strings. Keeping both directions in one module is what makes the store's round trip exact.

Layout decisions:
- A `Question` node holds what the question IS (dataset, text, task, gold, options: its id is
  derived from them) plus the source fields of the record that first stored it. Each `Debate`
  keeps its own record's `qid`, explanation and extra fields (`qid`, `question_meta_json`), since
  two files may hold the same question under different ids.
- Prompts: every chat message is a content-addressed `PromptPart {id, role, content}` stored once
  (few-shot demos are shared by every prompt of an agent, a round's discussion message by every
  agent of that round); a `Response` lists its messages' ids in order (`prompt_parts`), which
  reproduces the prompt exactly.
- Outputs: `outputs_json` on the `Response`, every completion call of the turn in order.
"""

from __future__ import annotations

import json
from typing import Any

from magdi import ids
from magdi.mag import Agent, Debate, Edge, Message, Question, Response, canonical

_RESPONSE_FIELDS = [f for f in Response.model_fields if f not in ("prompt", "outputs")]


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


def question_from(props: dict[str, Any], debate: dict[str, Any] | None = None) -> Question:
    """The question as `debate` saw it: the node's content plus the debate's own record fields."""
    meta = json.loads(debate["question_meta_json"]) if debate and debate.get("question_meta_json") else None
    if meta is None:  # a node written before debates kept their record (or an EvalRun's question)
        meta = {"gold_explanation": props.get("gold_explanation"),
                "extra": json.loads(props["extra_json"]) if props.get("extra_json") else {}}
    return Question(
        dataset=props["dataset"],
        qid=(debate or {}).get("qid") or props["qid"],
        text=props["text"],
        task=props["task"],
        gold_answer=props.get("gold_answer"),
        options=list(props.get("options") or []),
        gold_explanation=meta.get("gold_explanation"),
        extra=meta.get("extra") or {},
    )


def agent_row(a: Agent) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "model": a.model, "endpoint": a.endpoint}


def debate_row(d: Debate, debate_id: str) -> dict[str, Any]:
    """The Debate node's properties, including roll-ups that Cypher users filter on.

    `created_at` is set when the node is created only (see `graph_store`), so it is not in here.
    """
    q = d.question
    return {
        "id": debate_id,
        "job_id": d.job_id,
        "dataset": q.dataset,
        "question_id": q.id,
        "qid": q.qid,
        "question_meta_json": json.dumps({"gold_explanation": q.gold_explanation, "extra": q.extra},
                                         ensure_ascii=False),
        "protocol": d.protocol,
        "config_hash": d.config_hash,
        "status": d.status.value,
        "team_answer": d.team_answer,
        "team_correct": d.team_correct,
        "majority_answer": d.majority_answer,
        "consensus": d.consensus,
        "rounds_used": d.rounds_used,
        "error": d.error,
        "panel_json": json.dumps([a.model_dump() for a in d.panel], ensure_ascii=False),
        "agents": [a.name for a in d.panel],
        "n_agents": len(d.panel),
        "n_responses": len(d.responses),
        "tokens_in": d.tokens_in,
        "tokens_out": d.tokens_out,
        "cost_usd": d.cost_usd,
    }


def prompt_parts(r: Response) -> list[dict[str, str]]:
    """The `PromptPart` rows of a response's prompt, in message order (repeats included)."""
    return [{"id": ids.prompt_part_id(m.role, m.content), "role": m.role, "content": m.content}
            for m in r.prompt or []]


def response_row(d: Debate, debate_id: str, r: Response) -> dict[str, Any]:
    props = r.model_dump(mode="json", exclude={"prompt", "outputs"})
    props["id"] = ids.response_id(debate_id, r.agent, r.round)
    props["debate_id"] = debate_id
    props["label"] = r.label
    props["prompt_parts"] = None if r.prompt is None else [p["id"] for p in prompt_parts(r)]
    props["outputs_json"] = json.dumps([o.model_dump(mode="json") for o in r.outputs], ensure_ascii=False) \
        if r.outputs else None
    agent = next(a for a in d.panel if a.name == r.agent)
    return {"id": props["id"], "debate_id": debate_id, "agent_id": agent.id, "props": props}


def edge_row(debate_id: str, e: Edge) -> dict[str, Any]:
    return {
        "src": ids.response_id(debate_id, e.source_agent, e.source_round),
        "dst": ids.response_id(debate_id, e.target_agent, e.target_round),
        "same_agent": e.same_agent,
        "debate_id": debate_id,
    }


def response_from(props: dict[str, Any], parts: dict[str, dict[str, Any]] | None = None) -> Response:
    values = {k: props.get(k) for k in _RESPONSE_FIELDS if props.get(k) is not None}
    if props.get("prompt_parts") is not None:
        found = parts or {}
        missing = [p for p in props["prompt_parts"] if p not in found]
        if missing:
            raise LookupError(f"response {props.get('id')}: prompt parts {missing[:3]} are not stored")
        values["prompt"] = [Message(role=found[p]["role"], content=found[p]["content"])
                            for p in props["prompt_parts"]]
    if props.get("outputs_json"):
        values["outputs"] = json.loads(props["outputs_json"])
    return Response(**values)


def debate_from(
    d: dict[str, Any], q: dict[str, Any], responses: list[dict[str, Any]], edges: list[list[Any]],
    parts: list[dict[str, Any]] | None = None,
) -> Debate:
    """Rebuild a Debate from what `graph_store` reads (edges as [src_agent, src_round, dst_agent, dst_round])."""
    created = d.get("created_at")
    if created is not None and hasattr(created, "to_native"):
        created = created.to_native()
    panel = [Agent(**a) for a in json.loads(d["panel_json"])]
    by_id = {p["id"]: p for p in parts or []}
    debate = Debate(
        question=question_from(q, d),
        job_id=d.get("job_id"),
        protocol=d["protocol"],
        panel=panel,
        config_hash=d.get("config_hash"),
        status=d["status"],
        responses=[response_from(r, by_id) for r in responses],
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
