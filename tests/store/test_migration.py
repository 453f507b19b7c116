"""Migration 4 on a store written by schema version 3 WITH data in it (issue 10, item 1).

The data is written exactly as versions 2 and 3 wrote it (`legacy_store.write_v2`): a job's debates (one
still running), imported MAGs (one question twice in a file, kept as two records), an evaluation
run on a question, a job spec from before the vote option, and a label that the old tolerance got
wrong. After `schema.apply` every MAG reads back with the same content under the new identities,
a resumed job or re-import finds them (no duplicates), and a second run changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from legacy_store import as_version_3, debate_id_v2, question_id_v2, write_v2
from repo_data import data_file

from magdi.datasets import load_questions
from magdi.formats import magdi_ref
from magdi.mag import (
    Agent,
    Debate,
    DebateStatus,
    JobSpec,
    Question,
    Response,
    canonical,
    full_visibility_edges,
)
from magdi.store import schema
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.generator.jobspec import prepare


def mag(q: Question, job: str | None, answers: tuple[str, ...], rounds: int = 2, **extra: object) -> Debate:
    panel = [Agent(name=n, model=f"{n}-m") for n in ("a", "b", "c")]
    responses = [Response(agent=a.name, round=r, answer=ans, reasoning=f"{a.name} {r}", confidence=0.8,
                          recalibrated_confidence=0.5, correct=ans == q.gold_answer, tokens_in=10, tokens_out=5)
                 for r in range(rounds) for a, ans in zip(panel, answers, strict=True)]
    return Debate(question=q, job_id=job, panel=panel, responses=responses, edges=full_visibility_edges(responses),
                  team_answer=answers[0], team_correct=answers[0] == q.gold_answer, rounds_used=rounds, **extra)


def content(d: Debate) -> dict[str, object]:
    """Everything but ids and labels: what must survive the migration unchanged."""
    return d.model_dump(mode="json", exclude={"team_correct": True, "responses": {"__all__": {"correct"}}})


def write_legacy(store: GraphStore, tmp_path: Path) -> tuple[JobSpec, list[Debate], list[Debate], Path]:
    """Data as version 3 wrote it; returns (job spec, generated MAGs, imported MAGs, the import file)."""
    driver = store.driver
    test = data_file("gsm8k", "test.jsonl")
    questions = load_questions(test, "gsm8k", limit=3)
    spec = JobSpec(name="legacy", dataset="gsm8k", data_path=str(test), data_format="gsm8k", limit=3,
                   panel={"name": "p", "agents": [{"name": n, "model": f"{n}-m", "base_url": "http://127.0.0.1:9/v1"}
                                                  for n in "abc"]},
                   protocol={"name": "reconcile", "max_rounds": 3, "topology": "all", "reask": True})
    JobStore(store).create(spec, total=3)
    job = spec.id
    stored = json.loads(store.rows("MATCH (j:Job {id: $id}) RETURN j.spec_json AS s", id=job)[0]["s"])
    del stored["protocol"]["missing_confidence"]  # a spec written before the option existed
    store.rows("MATCH (j:Job {id: $id}) SET j.spec_json = $s", write=True, id=job, s=json.dumps(stored))
    generated = [mag(questions[0], job, ("18", "18", "18"), rounds=1, consensus=True),
                 mag(questions[1], job, ("3", "2", "3")),
                 mag(questions[2], job, ("70000", "7000", "70000"), rounds=1, status=DebateStatus.RUNNING)]
    ref = tmp_path / "ref.json"
    record = {"question": "How many legs has a spider?", "gold_answer": "8", "id": "spider",
              "a_output_0": {"reasoning": "r", "answer": "8", "confidence_level": 0.9}}
    ref.write_text(json.dumps([record, {**record, "id": "spider-again"},
                               {"question": "How many is a million?", "gold_answer": "1000000",
                                "a_output_0": {"reasoning": "r", "answer": "1000001", "confidence_level": 0.9}}]))
    imported, _ = magdi_ref.load(ref, dataset="gsm8k")
    million = imported[2].responses[0].model_copy(update={"correct": True})  # the old 1e-6 tolerance said so
    imported[2] = imported[2].model_copy(update={"responses": [million], "team_correct": True})
    legacy = generated + imported
    write_v2(driver, legacy)
    eval_q = question_id_v2("gsm8k", questions[0].qid)
    driver.execute_query("MATCH (q:Question {id: $q}) CREATE (:EvalRun {id: 'run-1'})-[:EVALUATED_ON "
                         "{predicted: '18', correct: true}]->(q)", q=eval_q)
    as_version_3(driver)
    return spec, generated, imported, ref


def test_migration_4_upgrades_a_version_3_store_with_data(store: GraphStore, tmp_path: Path) -> None:
    driver = store.driver
    spec, generated, imported, ref = write_legacy(store, tmp_path)
    legacy, job, questions = generated + imported, spec.id, [d.question for d in generated]
    assert schema.current_version(driver) == 3
    assert store.rows("MATCH (q:Question) RETURN count(q) AS n")[0]["n"] == 6  # spider twice, by record id

    assert schema.apply(driver) == schema.SCHEMA_VERSION == 4

    by_id = {d.id: d for d in (store.get_debate(i) for i in store.debate_ids())}
    assert set(by_id) == {d.id for d in legacy}, "every debate under its new id, none lost or added"
    assert not {debate_id_v2(d) for d in legacy} & set(by_id)
    for d in legacy:
        back = by_id[d.id]
        assert content(back) == content(canonical(d)), d.id
        assert back.created_at == d.created_at
        if d is not imported[2]:
            assert back == canonical(d), "labels too"
    assert by_id[imported[2].id].responses[0].correct is False, "1000001 is not 1000000: relabelled"
    assert by_id[imported[2].id].team_correct is False
    assert [r.label for r in by_id[imported[2].id].responses] == [0]
    counts = store.rows("MATCH (q:Question) WITH count(q) AS q MATCH (r:Response) WITH q, count(r) AS r "
                        "MATCH ()-[e:INFORMS]->() RETURN q, r, count(e) AS e")[0]
    assert counts == {"q": 5, "r": sum(len(d.responses) for d in legacy), "e": sum(len(d.edges) for d in legacy)}
    spider = store.rows("MATCH (q:Question)<-[:ON]-(d:Debate) WHERE q.text STARTS WITH 'How many legs' "
                        "RETURN q.id AS q, collect(d.qid) AS qids")
    assert len(spider) == 1 and sorted(spider[0]["qids"]) == ["spider", "spider-again"], "one question, two records"
    evals = store.rows("MATCH (:EvalRun {id: 'run-1'})-[e:EVALUATED_ON]->(q:Question) RETURN q.id AS q, e.predicted AS p")
    assert evals == [{"q": questions[0].id, "p": "18"}]
    responses = store.rows("MATCH (d:Debate)-[:HAS_RESPONSE]->(r:Response) RETURN d.id AS d, r.id AS r, "
                           "r.debate_id AS rd")
    assert all(x["r"].startswith(x["d"] + "/") and x["rd"] == x["d"] for x in responses)
    assert not store.rows("MATCH (:Response)-[x:INFORMS]->(:Response) WHERE NOT x.debate_id STARTS WITH 'd-' "
                          "OR size(x.debate_id) <> 26 RETURN x LIMIT 1")

    # the job keeps the vote rule it ran with, and a resume finds every stored debate
    migrated = JobStore(store).get(job)
    assert migrated.spec.protocol.missing_confidence == "ignore"
    assert store.rows("MATCH (j:Job {id: $id}) RETURN j.config_hash AS h", id=job)[0]["h"] == migrated.spec.config_hash
    resumed = prepare(migrated.spec)
    assert {Debate(question=q, job_id=job, panel=legacy[0].panel).id for q in resumed.questions} \
        == {d.id for d in generated}
    # re-importing the file adds nothing
    again, _ = magdi_ref.load(ref, dataset="gsm8k")
    assert {d.id for d in again} == {d.id for d in imported}

    before = store.rows("MATCH (n) WHERE NOT n:SchemaVersion RETURN count(n) AS n")[0]["n"]
    assert schema.migrate_content_ids(driver) == {"debates_renamed": 0, "labels_fixed": 0, "questions_renamed": 0,
                                                  "questions_merged": 0, "jobs_pinned": 0}, "a second run: no-op"
    assert store.rows("MATCH (n) WHERE NOT n:SchemaVersion RETURN count(n) AS n")[0]["n"] == before


def test_restoring_a_version_3_backup_migrates_its_data(store: GraphStore, tmp_path: Path) -> None:
    from magdi.store.backup import backup, restore

    _, generated, imported, _ = write_legacy(store, tmp_path)
    info = backup(store.driver, tmp_path / "v3.backup")
    assert info.schema_version == 3
    schema.apply(store.driver)  # the running magdi is at version 4 when the old backup is restored
    restore(store.driver, tmp_path / "v3.backup", wipe=True)
    assert schema.current_version(store.driver) == schema.SCHEMA_VERSION
    assert set(store.debate_ids()) == {d.id for d in generated + imported}
    assert all(store.get_debate(d.id).question.text == d.question.text for d in generated + imported)
