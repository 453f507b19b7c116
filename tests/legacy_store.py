"""How magdi wrote MAGs up to schema version 3, kept verbatim for the migration tests.

Question ids were (dataset, record id), debate ids (job, dataset, record id), the question's record
fields lived on the shared Question node (`SET n += q`: the last writer won), and `created_at` was
overwritten by every write. `write_v2` stores debates exactly that way (versions 2 and 3 wrote the
same data; 3 only added indexes), so migration 4 can be tested on data "written by today's
schema" without keeping the old code in the product.
"""

from __future__ import annotations

import json
from typing import Any

from magdi import ids
from magdi.mag import Debate
from magdi.store import graph_store

_QUESTIONS = "UNWIND $rows AS q MERGE (n:Question {id: q.id}) SET n += q"
_AGENTS = "UNWIND $rows AS a MERGE (n:Agent {id: a.id}) ON CREATE SET n += a"
_DEBATES = """
UNWIND $rows AS d
MERGE (n:Debate {id: d.id}) SET n += d
WITH n, d
MATCH (q:Question {id: d.question_id})
MERGE (n)-[:ON]->(q)
WITH n, d
OPTIONAL MATCH (j:Job {id: d.job_id})
FOREACH (_ IN CASE WHEN j IS NULL THEN [] ELSE [1] END | MERGE (n)-[:PART_OF]->(j))
"""
# unchanged since version 2; if they ever change, keep the version-2 text here
_RESPONSES, _EDGES = graph_store._MERGE_RESPONSES, graph_store._MERGE_EDGES

def question_id_v2(dataset: str, qid: str) -> str:
    return f"q-{ids.digest(dataset, qid)}"


def debate_id_v2(d: Debate) -> str:
    return f"d-{ids.digest(d.job_id or '', d.question.dataset, d.question.qid)}"


def rows_v2(d: Debate) -> dict[str, Any]:
    q, did = d.question, debate_id_v2(d)
    question = {"id": question_id_v2(q.dataset, q.qid), "dataset": q.dataset, "qid": q.qid, "text": q.text,
                "task": q.task.value, "gold_answer": q.gold_answer, "options": list(q.options),
                "gold_explanation": q.gold_explanation,
                "extra_json": json.dumps(q.extra, ensure_ascii=False) if q.extra else None}
    debate = {"id": did, "job_id": d.job_id, "dataset": q.dataset, "question_id": question["id"],
              "protocol": d.protocol, "config_hash": d.config_hash, "status": d.status.value,
              "team_answer": d.team_answer, "team_correct": d.team_correct, "majority_answer": d.majority_answer,
              "consensus": d.consensus, "rounds_used": d.rounds_used, "error": d.error, "created_at": d.created_at,
              "panel_json": json.dumps([a.model_dump() for a in d.panel], ensure_ascii=False),
              "agents": [a.name for a in d.panel], "n_agents": len(d.panel), "n_responses": len(d.responses),
              "tokens_in": d.tokens_in, "tokens_out": d.tokens_out, "cost_usd": d.cost_usd}
    responses = []
    for r in d.responses:
        props = r.model_dump(mode="json", exclude={"prompt", "outputs"})  # fields version 2 did not have
        props.update(id=f"{did}/{r.agent}/{r.round}", debate_id=did, label=r.label)
        agent = next(a for a in d.panel if a.name == r.agent)
        responses.append({"id": props["id"], "debate_id": did, "agent_id": agent.id, "props": props})
    edges = [{"src": f"{did}/{e.source_agent}/{e.source_round}", "dst": f"{did}/{e.target_agent}/{e.target_round}",
              "same_agent": e.same_agent, "debate_id": did} for e in d.edges]
    agents = [{"id": a.id, "name": a.name, "model": a.model, "endpoint": a.endpoint} for a in d.panel]
    return {"question": question, "debate": debate, "responses": responses, "edges": edges, "agents": agents}


def write_v2(driver: Any, debates: list[Debate]) -> None:
    """Write MAGs as schema versions 2 and 3 did (one transaction per call)."""
    rows = [rows_v2(d) for d in debates]

    def tx(t: Any) -> None:
        t.run(_QUESTIONS, rows=[r["question"] for r in rows]).consume()
        t.run(_AGENTS, rows=[a for r in rows for a in r["agents"]]).consume()
        t.run(_DEBATES, rows=[r["debate"] for r in rows]).consume()
        t.run(_RESPONSES, rows=[x for r in rows for x in r["responses"]]).consume()
        t.run(_EDGES, rows=[x for r in rows for x in r["edges"]]).consume()

    with driver.session() as session:
        session.execute_write(tx)


def as_version_3(driver: Any) -> None:
    """Make the store look like one at version 3: the rules of migration 4 dropped, version 3."""
    driver.execute_query("DROP CONSTRAINT prompt_part_id IF EXISTS")
    driver.execute_query("DROP INDEX debate_question IF EXISTS")
    driver.execute_query("MERGE (s:SchemaVersion {id: 'magdi'}) SET s.version = 3")
