"""Evaluation results in Neo4j: `(:EvalRun)-[:EVALUATED_ON {predicted, correct}]->(:Question)`.

Writes MERGE on our own ids (the run id is drawn once, before the transaction), so a retried
transaction changes nothing. Questions are matched by the project's question id; a question not
stored yet (a benchmark file evaluated without debates) is created with the same properties the
graph store would give it.
"""

from __future__ import annotations

from typing import Any

import neo4j

from magdi.mag import Question
from magdi.store.graph_store import GraphStore
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


def eval_rows(items: list[tuple[Question, str | None, bool, float]]) -> list[dict[str, Any]]:
    """(question, predicted, correct, output tokens) -> the rows of `EvalRuns.save`."""
    return [{"question": question_row(q), "predicted": pred, "correct": ok, "gold": q.gold_answer,
             "output_tokens": tokens} for q, pred, ok, tokens in items]


class EvalRuns:
    """The trainer's evaluation runs, stored next to the questions they were scored on."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def save(self, run: dict[str, Any], rows: list[dict[str, Any]]) -> int:
        """Write the run node, then its question links in chunks of CHUNK; returns links created."""
        self.store._run(lambda t: t.run(_MERGE_RUN, run=run).consume(), write=True)
        created = 0
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            created += self.store._run(
                lambda t, chunk=chunk: t.run(_LINK_QUESTIONS, run_id=run["id"], rows=chunk)
                .consume().counters.relationships_created,
                write=True,
            )
        return created

    def get(self, run_id: str) -> dict[str, Any] | None:
        """{"run": properties, "items": [{question_id, predicted, correct, gold}]} or None."""

        def read(t: neo4j.ManagedTransaction) -> dict[str, Any] | None:
            record = t.run(_READ_RUN, run_id=run_id).single()
            return None if record is None or record["run"] is None else {"run": record["run"], "items": record["items"]}

        return self.store._run(read)
