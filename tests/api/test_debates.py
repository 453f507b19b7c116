"""POST/GET/DELETE /v1/debates against the real Neo4j: queueing, filters, pagination, whole MAGs."""

from __future__ import annotations

import pytest
from api_helpers import AUTH

from magdi import ids
from magdi.mag import Debate, ParseStatus, Response, canonical
from magdi.store.jobs import JobStore


def test_post_debate_queues_a_one_question_job(client, store, panel):
    body = {"question": {"text": "What is 6 * 7?", "dataset": "gsm8k", "gold_answer": "42"}, "panel": panel,
            "protocol": {"max_rounds": 2}}
    r = client.post("/v1/debates", json=body, headers=AUTH)
    assert r.status_code == 202, r.text
    out = r.json()
    job = JobStore(store).get(out["job_id"])
    assert job is not None and job.status.value == "queued" and job.total == 1
    assert [q.text for q in job.spec.questions] == ["What is 6 * 7?"] and job.spec.data_path is None
    assert job.spec.protocol["max_rounds"] == 2 and job.spec.panel["agents"][1]["api_key_env"] == "BOB_KEY"
    q = job.spec.questions[0]
    assert out["debate_id"] == ids.debate_id(job.id, q.id, q.qid)
    assert q.task.value == "number"  # from the dataset name
    assert r.headers["location"] == out["job_url"] == f"/v1/jobs/{job.id}"
    # a retried POST is the same job, not a second one
    again = client.post("/v1/debates", json=body, headers=AUTH)
    assert again.status_code == 202 and again.json() == out
    assert len(JobStore(store).list()) == 1


@pytest.mark.parametrize(("patch", "field"), [
    ({"question": {"text": ""}}, "text"),
    ({"question": {"text": "q", "surprise": 1}}, "surprise"),
    ({"panel": {"agents": []}}, "agents"),
    ({"panel": {"agents": [{"name": "a b", "model": "m", "base_url": "http://x"}]}}, "name"),
    ({"panel": {"agents": [{"name": "a", "model": "m", "base_url": "ftp://x"}]}}, "base_url"),
    ({"panel": {"agents": [{"name": "a", "model": "m", "base_url": "http://x", "api_key": "sk-123"}]}}, "api_key"),
    ({"protocol": {"max_rounds": 99}}, "max_rounds"),
    ({"protocol": {"name": "chaos"}}, "name"),
])
def test_post_debate_rejects_bad_input_naming_the_field(client, store, panel, patch, field):
    body = {"question": {"text": "What is 6 * 7?"}, "panel": panel, **patch}
    r = client.post("/v1/debates", json=body, headers=AUTH)
    assert r.status_code == 422
    assert field in r.text
    assert JobStore(store).list() == []


def test_list_filters_and_paginates_with_cursors(client, store, make_debate):
    debates = [make_debate(i, job_id="job-a" if i % 2 else "job-b", dataset="gsm8k" if i < 5 else "aqua",
                           rounds=2 if i < 7 else 3) for i in range(9)]
    debates[0] = debates[0].model_copy(update={"team_correct": False, "consensus": True})
    store.write_debates(debates)

    def ids_of(**params):
        got, cursor, pages = [], None, 0
        while True:
            query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
            r = client.get("/v1/debates", params=query, headers=AUTH)
            assert r.status_code == 200, r.text
            got += [d["id"] for d in r.json()["items"]]
            cursor, pages = r.json()["next_cursor"], pages + 1
            if cursor is None:
                return got, pages

    everything, pages = ids_of()
    assert everything == sorted(d.id for d in debates) and pages == 5
    assert set(ids_of(dataset="aqua")[0]) == {d.id for d in debates[5:]}
    assert set(ids_of(job="job-a")[0]) == {d.id for d in debates if d.job_id == "job-a"}
    assert ids_of(team_correct="false")[0] == [debates[0].id]
    assert ids_of(consensus="true")[0] == [debates[0].id]
    assert set(ids_of(rounds_used=3)[0]) == {d.id for d in debates[7:]}
    assert len(ids_of(agent="bob")[0]) == 9 and ids_of(agent="mallory")[0] == []
    assert len(ids_of(status="complete")[0]) == 9
    item = client.get("/v1/debates", params={"limit": 1}, headers=AUTH).json()["items"][0]
    assert item["agents"] == ["alice", "bob", "carol"] and item["n_responses"] in (6, 9)
    assert "panel_json" not in item


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "ten"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "eyJ4IjogMX0="}, "cursor"),
    ({"status": "sleeping"}, "status"), ({"rounds_used": -1}, "rounds_used"), ({"consensus": "maybe"}, "consensus"),
])
def test_list_rejects_bad_query_parameters(client, params, field):
    r = client.get("/v1/debates", params=params, headers=AUTH)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_get_returns_the_whole_mag(client, store, make_debate):
    debate = make_debate(3, rounds=3, job_id="job-x")
    responses = [r for r in debate.responses if not (r.agent == "carol" and r.round == 2)]
    responses.append(Response(agent="carol", round=2, parse_status=ParseStatus.ABSENT))
    debate = Debate.model_validate({**debate.model_dump(), "responses": [r.model_dump() for r in responses],
                                    "edges": [e.model_dump() for e in debate.edges
                                              if not (e.target_agent == "carol" and e.target_round == 2)]})
    store.write_debate(debate)
    r = client.get(f"/v1/debates/{debate.id}", headers=AUTH)
    assert r.status_code == 200
    mag = r.json()
    stored = canonical(debate)
    assert mag["id"] == debate.id and mag["question"]["text"] == debate.question.text
    assert mag["question"]["id"] == debate.question.id and mag["job_id"] == "job-x"
    assert [(n["agent"], n["round"]) for n in mag["nodes"]] == [(x.agent, x.round) for x in stored.responses]
    assert {n["id"] for n in mag["nodes"]} == {debate.response_id(x.agent, x.round) for x in debate.responses}
    absent = next(n for n in mag["nodes"] if n["parse_status"] == "absent")
    assert absent["label"] == 2 and absent["answer"] is None
    assert len(mag["edges"]) == len(debate.edges)
    node_ids = {n["id"] for n in mag["nodes"]}
    assert all(e["source"] in node_ids and e["target"] in node_ids for e in mag["edges"])
    assert mag["team_answer"] == "18" and mag["rounds_used"] == 3
    m = mag["metrics"]
    assert (m["nodes"], m["edges"], m["rounds"], m["absent"]) == (9, len(debate.edges), 3, 1)
    assert m["tokens_in"] == debate.tokens_in and m["correct"] + m["incorrect"] == 8


def test_unknown_debate_is_404_and_delete_removes_it(client, store, make_debate):
    assert client.get("/v1/debates/d-nope", headers=AUTH).status_code == 404
    assert client.delete("/v1/debates/d-nope", headers=AUTH).status_code == 404
    debate = make_debate(4)
    store.write_debate(debate)
    assert client.delete(f"/v1/debates/{debate.id}", headers=AUTH).status_code == 204
    assert client.get(f"/v1/debates/{debate.id}", headers=AUTH).status_code == 404
    assert store.count_debates() == 0
    rows, _, _ = store.driver.execute_query("MATCH (r:Response) RETURN count(r) AS n")
    assert rows[0]["n"] == 0


def test_the_queued_spec_is_one_the_generator_accepts(client, store, panel):
    """Contract with services/generator: the worker parses the panel and protocol the API stored."""
    generator_panel = pytest.importorskip("services.generator.panel")
    protocols = pytest.importorskip("services.generator.protocols")
    body = {"question": {"text": "2 + 2?", "dataset": "gsm8k", "gold_answer": "4"}, "panel": panel,
            "protocol": {"max_rounds": 2, "topology": "ring"}}
    job = JobStore(store).get(client.post("/v1/debates", json=body, headers=AUTH).json()["job_id"])
    parsed = generator_panel.parse_panel(job.spec.panel, "api job")
    protocol = protocols.ProtocolConfig.model_validate(job.spec.protocol)
    protocol.check_agents(parsed.agent_names)
    assert parsed.agent_names == ["alice", "bob"] and protocol.max_rounds == 2
