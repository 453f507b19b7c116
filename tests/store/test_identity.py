"""Stored data never changes meaning (issue 10, items 1 and 5): question identity is its content,
a write that would change a stored question is refused, imports of two files never collide, and
an idempotent re-import changes nothing, `created_at` included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_data import data_file
from typer.testing import CliRunner

from magdi.datasets import load_questions
from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from magdi.store.graph_store import GraphStore


def snapshot(store: GraphStore) -> list[str]:
    nodes = store.rows("MATCH (n) WHERE NOT n:SchemaVersion RETURN labels(n) AS l, properties(n) AS p")
    rels = store.rows("MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS t, properties(r) AS p, b.id AS b")
    return sorted([repr((r["l"], sorted(r["p"].items()))) for r in nodes]
                  + [repr((r["a"], r["t"], sorted(r["p"].items()), r["b"])) for r in rels])


def debate_on(q: Question, job: str | None, answers: tuple[str, ...]) -> Debate:
    """A one-round MAG whose agents answer `answers`, labelled against the question's gold."""
    panel = [Agent(name=f"a{i}", model=f"m{i}") for i in range(len(answers))]
    responses = [Response(agent=a.name, round=0, answer=ans, reasoning="because", confidence=0.9,
                          correct=ans == q.gold_answer) for a, ans in zip(panel, answers, strict=True)]
    return Debate(question=q, job_id=job, panel=panel, responses=responses, edges=full_visibility_edges(responses),
                  team_answer=answers[0], team_correct=answers[0] == q.gold_answer, rounds_used=1)


def test_two_files_under_one_dataset_name_keep_both_jobs_questions_and_labels(store: GraphStore,
                                                                               tmp_path: Path) -> None:
    """Item 1: record 0 of test.jsonl (duck eggs, 18) and record 0 of lines 31-32 (gold 109) are two
    questions; the second job once rewrote the first job's question into its own."""
    test = data_file("gsm8k", "test.jsonl")
    lines = test.read_text().splitlines()
    part = tmp_path / "lines-31-32.jsonl"
    part.write_text("\n".join(lines[30:32]) + "\n")
    [duck] = load_questions(test, "gsm8k", limit=1)
    ages, _ = load_questions(part, "gsm8k")
    assert duck.qid == ages.qid == "0" and duck.gold_answer == "18" and ages.gold_answer == "109"
    first, second = debate_on(duck, "job-a", ("18", "17")), debate_on(ages, "job-b", ("109", "109"))
    store.write_debate(first)
    store.write_debate(second)
    a, b = store.get_debate(first.id), store.get_debate(second.id)
    assert a.question.text.startswith("Janet") and a.question.gold_answer == "18"
    assert b.question.text.startswith("Darrell") and b.question.gold_answer == "109"
    assert [r.correct for r in a.responses] == [True, False] and a.team_correct is True
    assert a.question.qid == b.question.qid == "0" and a.question.id != b.question.id
    assert store.rows("MATCH (q:Question) RETURN count(q) AS n")[0]["n"] == 2


def test_a_write_that_would_change_a_stored_question_is_refused(store: GraphStore) -> None:
    from magdi.store.graph_store import WriteConflict

    stored = Question(dataset="gsm8k", qid="0", text="What is  9 + 9?", task=TaskType.NUMBER, gold_answer="18")
    store.write_debate(debate_on(stored, "job-a", ("18",)))
    before = snapshot(store)
    spacing = stored.model_copy(update={"text": "What is 9 + 9?"})  # the same question id, other text
    retyped = stored.model_copy(update={"task": TaskType.TEXT})
    for other in (spacing, retyped):
        assert other.id == stored.id
        with pytest.raises(WriteConflict, match=rf"question {stored.id} of dataset 'gsm8k' is stored with other"):
            store.write_debate(debate_on(other, "job-b", ("18",)))
        with pytest.raises(WriteConflict, match="never changed"):
            store.check_questions([other], where="data.jsonl: ")
    assert snapshot(store) == before, "nothing of a refused write is stored"
    store.check_questions([stored])  # the same content is no conflict
    with pytest.raises(WriteConflict, match="appears with two contents"):  # within one batch
        store.write_debates([debate_on(stored, "job-c", ("18",)), debate_on(spacing, "job-d", ("18",))])
    assert snapshot(store) == before


def test_a_debate_keeps_its_question(store: GraphStore) -> None:
    """A job's debate id names (job, question, record): the same record with another question is
    another debate, never a stored debate moved onto it."""
    q1 = Question(dataset="d", qid="0", text="one?", gold_answer="1")
    q2 = q1.model_copy(update={"text": "two?", "gold_answer": "2"})
    d1, d2 = debate_on(q1, "job-x", ("1",)), debate_on(q2, "job-x", ("2",))
    assert d1.id != d2.id
    store.write_debates([d1])
    store.write_debates([d2])
    assert store.get_debate(d1.id).question.text == "one?" and store.get_debate(d2.id).question.text == "two?"


def ref_file(tmp_path: Path, name: str, answers: list[str]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps([{"question": "How many legs has a spider?", "gold_answer": "8",
                                 **{f"a{i}_output_0": {"reasoning": "r", "answer": a, "confidence_level": 0.9}
                                    for i, a in enumerate(answers)}}]))
    return path


def test_imports_of_two_files_on_one_question_are_both_kept_and_reimport_adds_nothing(
        store: GraphStore, tmp_path: Path, neo4j_env) -> None:  # noqa: ANN001
    """Items 1 and 5 for imports: the second file's MAG is stored beside the first (it used to
    replace it), and re-importing either changes nothing, `created_at` included."""
    from magdi.cli import app

    runner = CliRunner()
    first, second = ref_file(tmp_path, "first.json", ["8", "6"]), ref_file(tmp_path, "second.json", ["8", "8"])
    for path in (first, second):
        result = runner.invoke(app, ["import", "--format", "magdi-ref", "--dataset", "gsm8k", str(path)])
        assert result.exit_code == 0, result.output
    created = {r["id"]: r["c"] for r in store.rows("MATCH (d:Debate) RETURN d.id AS id, d.created_at AS c")}
    assert len(created) == 2 and store.rows("MATCH (q:Question) RETURN count(q) AS n")[0]["n"] == 1
    before = snapshot(store)
    for path in (first, second):
        assert runner.invoke(app, ["import", "--format", "magdi-ref", "--dataset", "gsm8k", str(path)]).exit_code == 0
    assert snapshot(store) == before, "an idempotent re-import changes nothing (created_at included)"
    answers = sorted(sorted(r.answer for r in store.get_debate(i).responses) for i in created)
    assert answers == [["6", "8"], ["8", "8"]]


def test_created_at_is_the_first_writes(store: GraphStore, make_debate) -> None:  # noqa: ANN001
    """Item 5: a jsonl line without created_at gets 'now' on every parse; the store keeps the first."""
    from magdi.formats import jsonl

    line = json.loads(jsonl.to_line(make_debate(3)))
    del line["created_at"]
    first = jsonl.from_line(json.dumps(line), where="line 1")
    store.write_debate(first)
    stored = store.get_debate(first.id).created_at
    again = jsonl.from_line(json.dumps(line), where="line 1")
    assert again.id == first.id and again.created_at > first.created_at
    store.write_debate(again)
    assert store.get_debate(first.id).created_at == stored == first.created_at
