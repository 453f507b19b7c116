"""Evaluation results in Neo4j: `(:EvalRun)-[:EVALUATED_ON {predicted, correct}]->(:Question)`.

Small transaction functions run with `execute_write`/`execute_read`. Writes MERGE on our own ids
(the run id is drawn once, before the transaction), so a retried transaction changes nothing.
Questions are matched by the project's question id; a question not stored yet (a benchmark file
evaluated without debates) is created with the same properties the graph store would give it.
"""

from __future__ import annotations

from typing import Any

import neo4j

from magdi.mag import Question
from magdi.store.records import question_row

CHUNK = 500

_MERGE_RUN = "MERGE (r:EvalRun {id: $run.id}) SET r += $run"
_LINK_QUESTIONS = """
UNWIND $rows AS row
MERGE (q:Question {id: row.question.id})
ON CREATE SET q += row.question
WITH q, row
MATCH (r:EvalRun {id: $run_id})
MERGE (r)-[e:EVALUATED_ON]->(q)
SET e.predicted = row.predicted, e.correct = row.correct, e.gold = row.gold, e.output_tokens = row.output_tokens
"""
_READ_RUN = """
MATCH (r:EvalRun {id: $run_id})
OPTIONAL MATCH (r)-[e:EVALUATED_ON]->(q:Question)
RETURN r {.*} AS run, collect(CASE WHEN q IS NULL THEN NULL ELSE
       {question_id: q.id, predicted: e.predicted, correct: e.correct, gold: e.gold} END) AS items
"""


def _merge_run(tx: neo4j.ManagedTransaction, run: dict[str, Any]) -> None:
    tx.run(_MERGE_RUN, run=run).consume()


def _link_questions(tx: neo4j.ManagedTransaction, run_id: str, rows: list[dict[str, Any]]) -> int:
    return tx.run(_LINK_QUESTIONS, run_id=run_id, rows=rows).consume().counters.relationships_created


def _read_run(tx: neo4j.ManagedTransaction, run_id: str) -> dict[str, Any] | None:
    record = tx.run(_READ_RUN, run_id=run_id).single()
    return None if record is None or record["run"] is None else {"run": record["run"], "items": record["items"]}


def eval_rows(items: list[tuple[Question, str | None, bool, float]]) -> list[dict[str, Any]]:
    """(question, predicted, correct, output tokens) -> the UNWIND rows of `save_eval_run`."""
    return [{"question": question_row(q), "predicted": pred, "correct": ok, "gold": q.gold_answer,
             "output_tokens": tokens} for q, pred, ok, tokens in items]


def save_eval_run(driver: neo4j.Driver, run: dict[str, Any], rows: list[dict[str, Any]], *,
                  database: str | None = None, timeout_s: float = 60.0) -> int:
    """Write the run node, then its question links in chunks of CHUNK; returns links created."""
    created = 0
    merge = neo4j.unit_of_work(timeout=timeout_s)(_merge_run)
    link = neo4j.unit_of_work(timeout=timeout_s)(_link_questions)
    with driver.session(database=database) as session:
        session.execute_write(merge, run)
        for start in range(0, len(rows), CHUNK):
            created += session.execute_write(link, run["id"], rows[start:start + CHUNK])
    return created


def get_eval_run(driver: neo4j.Driver, run_id: str, *, database: str | None = None) -> dict[str, Any] | None:
    """{"run": properties, "items": [{question_id, predicted, correct, gold}]} or None."""
    read = neo4j.unit_of_work(timeout=30.0)(_read_run)
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        return session.execute_read(read, run_id)
