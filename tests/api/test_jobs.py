"""POST/GET/DELETE /v1/jobs: queue a dataset slice, read progress, cancel, purge."""

from __future__ import annotations

from api_helpers import AUTH

from magdi.mag import JobStatus
from magdi.store.graph_store import encode_cursor
from magdi.store.jobs import JobStore


def job_body(panel_config, **extra):
    return {"name": "slice1", "dataset": "gsm8k", "data_path": "gsm8k/test.jsonl", "format": "gsm8k",
            "offset": 10, "limit": 5, "panel": panel_config, **extra}


def test_create_get_and_list_jobs(client, store, panel):
    r = client.post("/v1/jobs", json=job_body(panel), headers=AUTH)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["id"] == "job-slice1" and job["status"] == "queued" and job["total"] == 5
    assert job["progress"] == 0.0 and job["tokens_in"] == 0 and job["cost_usd"] == 0.0 and job["errors"] == []
    assert job["spec"]["data_path"] == "gsm8k/test.jsonl" and job["spec"]["offset"] == 10
    assert r.headers["location"] == "/v1/jobs/job-slice1"
    stored = JobStore(store).get("job-slice1")
    assert stored is not None and stored.spec.data_format == "gsm8k" and stored.spec.limit == 5

    JobStore(store).update("job-slice1", done=2, failed=1, tokens_in=300, cost_usd=0.25, errors=["q7: timeout"])
    got = client.get("/v1/jobs/job-slice1", headers=AUTH).json()
    assert (got["done"], got["failed"], got["progress"], got["tokens_in"]) == (2, 1, 0.6, 300)
    assert got["cost_usd"] == 0.25 and got["errors"] == ["q7: timeout"]

    client.post("/v1/jobs", json=job_body(panel, name="slice2", limit=None), headers=AUTH)
    listed = client.get("/v1/jobs", headers=AUTH).json()["items"]
    assert [j["id"] for j in listed] == ["job-slice1", "job-slice2"]
    assert listed[1]["progress"] is None  # total unknown until a worker reads the file
    queued = client.get("/v1/jobs", params={"status": "queued", "limit": 1}, headers=AUTH).json()["items"]
    assert [j["id"] for j in queued] == ["job-slice1"]
    assert client.get("/v1/jobs", params={"status": "bogus"}, headers=AUTH).status_code == 422
    assert client.get("/v1/jobs/job-nope", headers=AUTH).status_code == 404


def test_job_list_pages_with_a_cursor(client, store, panel):
    for i in range(7):
        assert client.post("/v1/jobs", json=job_body(panel, name=f"page{i}"), headers=AUTH).status_code == 202
    store._run(lambda t: t.run("MATCH (j:Job) WHERE j.id IN ['job-page2', 'job-page3', 'job-page4'] "
                               "SET j.created_at = datetime('2030-01-01T00:00:00.123456789Z')"), write=True)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params, headers=AUTH).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # oldest first; the three with one timestamp (to the nanosecond) come last, in id order, once each
    assert seen == ["job-page0", "job-page1", "job-page5", "job-page6", "job-page2", "job-page3", "job-page4"]
    assert [j.id for j in JobStore(store).list()] == seen
    assert [j.id for j in JobStore(store).list(limit=3)] == seen[:3]
    r = client.get("/v1/jobs", params={"cursor": "bogus"}, headers=AUTH)
    assert r.status_code == 422 and "cursor" in r.text
    one_part = encode_cursor("job-page1")  # a debate-list cursor: job cursors have two parts
    assert client.get("/v1/jobs", params={"cursor": one_part}, headers=AUTH).status_code == 422


def test_same_name_other_config_is_a_conflict_and_same_config_is_a_no_op(client, store, panel):
    assert client.post("/v1/jobs", json=job_body(panel), headers=AUTH).status_code == 202
    assert client.post("/v1/jobs", json=job_body(panel), headers=AUTH).status_code == 202
    r = client.post("/v1/jobs", json=job_body(panel, offset=11), headers=AUTH)
    assert r.status_code == 409 and "different configuration" in r.json()["detail"]
    assert len(JobStore(store).list()) == 1


def test_bad_job_bodies_name_the_field(client, store, panel):
    for patch, field in [({"data_path": "../../etc/passwd"}, "data_path"), ({"format": "csv"}, "format"),
                         ({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"name": "a/b"}, "name"),
                         ({"dataset": ""}, "dataset"), ({"panel": {"agents": [{"name": "x"}]}}, "model"),
                         ({"questions": []}, "questions")]:
        r = client.post("/v1/jobs", json=job_body(panel, **patch), headers=AUTH)
        assert r.status_code == 422, (patch, r.text)
        assert field in r.text, (patch, r.text)
    assert JobStore(store).list() == []


def test_data_root_confines_data_paths(make_client, store, panel, tmp_path):  # noqa: ARG001 - store wipes
    client = make_client(data_root=tmp_path)
    r = client.post("/v1/jobs", json=job_body(panel, data_path="/etc/passwd"), headers=AUTH)
    assert r.status_code == 422 and "data_path" in r.text
    r = client.post("/v1/jobs", json=job_body(panel), headers=AUTH)
    assert r.status_code == 202 and r.json()["spec"]["data_path"] == str(tmp_path / "gsm8k/test.jsonl")


def test_cancel_then_purge(client, store, panel):
    client.post("/v1/jobs", json=job_body(panel), headers=AUTH)
    r = client.delete("/v1/jobs/job-slice1", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert JobStore(store).get("job-slice1").status is JobStatus.CANCELLED
    again = client.delete("/v1/jobs/job-slice1", headers=AUTH)
    assert again.status_code == 409 and "purge" in again.json()["detail"]
    assert client.delete("/v1/jobs/job-slice1", params={"purge": "true"}, headers=AUTH).status_code == 204
    assert JobStore(store).get("job-slice1") is None
    assert client.delete("/v1/jobs/job-slice1", headers=AUTH).status_code == 404
    assert client.delete("/v1/jobs/job-nope", params={"purge": "true"}, headers=AUTH).status_code == 404
