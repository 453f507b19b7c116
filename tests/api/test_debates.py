"""POST/GET/DELETE /v1/debates against the real Neo4j: queueing, filters, pagination, whole MAGs."""

from __future__ import annotations

import pytest
from api_helpers import AUTH, POLICY

from magdi import ids
from magdi.mag import Debate, ParseStatus, Response, canonical
from magdi.policy import Who
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
    assert job.spec.protocol.max_rounds == 2 and job.spec.panel.agents[1].endpoint == "sim"
    stored = job.spec.panel.model_dump(mode="json")["agents"]
    assert stored == panel["agents"], "the seats as the caller chose them; the operator's part is not stored"
    q = job.spec.questions[0]
    assert out["debate_id"] == ids.debate_id(job.id, q.id, q.qid)
    assert q.task.value == "number"  # from the dataset name
    assert r.headers["location"] == out["job_url"] == f"/v1/jobs/{job.id}"
    # a retried POST is the same job, not a second one
    again = client.post("/v1/debates", json=body, headers=AUTH)
    assert again.status_code == 202 and again.json() == out
    assert len(JobStore(store).list()) == 1


def seat(**kw):
    return {"panel": {"agents": [{"name": "a", "endpoint": "sim", "model": "sim-a", **kw}]}}


@pytest.mark.parametrize(("patch", "field"), [
    ({"question": {"text": ""}}, "text"),
    ({"question": {"text": "q", "surprise": 1}}, "surprise"),
    ({"panel": {"agents": []}}, "agents"),
    ({"panel": {"agents": [{"name": "a b", "model": "m", "base_url": "http://x"}]}}, "name"),
    ({"panel": {"agents": [{"name": "a", "model": "m", "base_url": "ftp://x"}]}}, "base_url"),
    ({"panel": {"agents": [{"name": "a", "model": "m", "base_url": "http://x", "api_key": "sk-123"}]}}, "api_key"),
    # the schema of `magdi generate`, as strict: a typo in a nested key is a 422 naming it
    (seat(limits={"rpmm": 5}), "rpmm"),
    # the operator's policy: endpoints by name, models and caps of this server, no URLs or key variables
    ({"panel": {"agents": [{"name": "a", "model": "sim-a", "base_url": "http://127.0.0.1:9/v1"}]}}, "base_url"),
    (seat(limits={"rpm": 5}), "limits"),
    (seat(price={"input_per_1k": 0}), "price"),
    (seat(api_key_env="OPENAI_API_KEY"), "api_key_env"),
    (seat(endpoint="elsewhere"), "endpoint"),
    (seat(model="gpt-17"), "model"),
    (seat(max_tokens=4096), "max_tokens"),
    ({"protocol": {"max_rounds": 99}}, "max_rounds"),
    ({"protocol": {"max_rounds": 6}}, "max_rounds"),
    ({"protocol": {"name": "chaos"}}, "name"),
    ({"protocol": {"topology": "alice->zed"}}, "topology"),
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


def test_the_queued_spec_is_one_the_worker_binds_to_its_declared_endpoint(client, store, panel):
    """Contract with the worker: it re-binds the stored seats to ITS declarations (URL, limits, caps)."""
    body = {"question": {"text": "2 + 2?", "dataset": "gsm8k", "gold_answer": "4"}, "panel": panel,
            "protocol": {"max_rounds": 2, "topology": "ring"}}
    job = JobStore(store).get(client.post("/v1/debates", json=body, headers=AUTH).json()["job_id"])
    bound = POLICY.bind(job.spec.panel, Who.WORKER)
    job.spec.protocol.check_agents(bound.agent_names)
    assert bound.agent_names == ["alice", "bob"] and job.spec.protocol.max_rounds == 2
    assert {a.base_url for a in bound.agents} == {"http://127.0.0.1:8901/v1"}
    assert [a.limits.rpm for a in bound.agents] == [60, 60] and [a.max_tokens for a in bound.agents] == [2048, 2048]
    assert bound.agents[1].temperature == 0.5
