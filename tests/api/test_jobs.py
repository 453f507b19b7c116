"""POST/GET/DELETE /v1/jobs: queue a dataset slice, read progress, cancel, purge."""

from __future__ import annotations

from api_helpers import AUTH, POLICY

from magdi.mag import JobStatus
from magdi.store.batches import BatchRecord, BatchStore
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
    store.rows("MATCH (j:Job) WHERE j.id IN ['job-page2', 'job-page3', 'job-page4'] "
               "SET j.created_at = datetime('2030-01-01T00:00:00.123456789Z')", write=True)
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


def test_a_batch_mode_job_is_queued_with_its_mode_and_is_another_configuration(client, store, panel):
    r = client.post("/v1/jobs", json=job_body(panel, name="bulk", mode="batch"), headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["mode"] == "batch" and r.json()["spec"]["offline"] is False
    stored = JobStore(store).get("job-bulk")
    assert stored is not None and stored.spec.mode == "batch"
    # the same slice synchronously is another job: same name, other configuration
    r = client.post("/v1/jobs", json=job_body(panel, name="bulk"), headers=AUTH)
    assert r.status_code == 409, r.text
    # offline batch files live in a folder only the CLI knows: not a field of the API
    r = client.post("/v1/jobs", json=job_body(panel, name="files", mode="batch", offline=True), headers=AUTH)
    assert r.status_code == 422 and "offline" in r.text
    r = client.post("/v1/jobs", json=job_body(panel, name="odd", mode="bulk"), headers=AUTH)
    assert r.status_code == 422 and "mode" in r.text


def test_bad_job_bodies_name_the_field(client, store, panel):
    for patch, field in [({"data_path": "../../etc/passwd"}, "data_path"), ({"format": "csv"}, "format"),
                         ({"limit": 0}, "limit"), ({"offset": -1}, "offset"), ({"name": "a/b"}, "name"),
                         ({"dataset": ""}, "dataset"), ({"panel": {"agents": [{"name": "x"}]}}, "model"),
                         ({"questions": []}, "questions")]:
        r = client.post("/v1/jobs", json=job_body(panel, **patch), headers=AUTH)
        assert r.status_code == 422, (patch, r.text)
        assert field in r.text, (patch, r.text)
    assert JobStore(store).list() == []


def test_data_paths_are_confined_to_the_data_root_with_one_answer_for_every_refusal(make_client, store, panel,
                                                                                     tmp_path, public_data):
    root, outside = tmp_path / "root", tmp_path / "private"
    (root / "gsm8k").mkdir(parents=True)
    outside.mkdir()
    (root / "gsm8k" / "test.jsonl").write_bytes(public_data("gsm8k", "test.jsonl").read_bytes())
    (outside / "rows.jsonl").write_bytes(public_data("gsm8k", "test.jsonl").read_bytes())
    (root / "escape.jsonl").symlink_to(outside / "rows.jsonl")  # a link inside the root to a file outside it
    (root / "linked").symlink_to(outside)  # a folder link
    client = make_client(policy=POLICY.model_copy(update={"data_root": root}))
    details = {}
    for path in ["/etc/passwd", "/etc/no-such-file", str(outside / "rows.jsonl"), "escape.jsonl",
                 "linked/rows.jsonl", "gsm8k/missing.jsonl", "gsm8k", "/"]:
        r = client.post("/v1/jobs", json=job_body(panel, data_path=path), headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data_path"], (path, r.text)
        details[path] = r.json()["detail"][0]["msg"]
    assert len(set(details.values())) <= 2, details  # "not under the root" never differs from "missing"
    assert details["/etc/passwd"] == details["/etc/no-such-file"] == details["escape.jsonl"] == details["/"]
    assert all("/etc" not in msg and str(outside) not in msg for msg in details.values())
    ok = client.post("/v1/jobs", json=job_body(panel), headers=AUTH)
    assert ok.status_code == 202 and ok.json()["spec"]["data_path"] == "gsm8k/test.jsonl"
    absolute = client.post("/v1/jobs", json=job_body(panel, name="abs", data_path=str(root / "gsm8k/test.jsonl")),
                           headers=AUTH)
    assert absolute.status_code == 202 and absolute.json()["spec"]["data_path"] == "gsm8k/test.jsonl"
    assert [j.id for j in JobStore(store).list()] == ["job-slice1", "job-abs"]


def test_without_a_data_root_no_data_file_job_is_accepted(make_client, store, panel):  # noqa: ARG001
    client = make_client(policy=POLICY.model_copy(update={"data_root": None}))
    r = client.post("/v1/jobs", json=job_body(panel), headers=AUTH)
    assert r.status_code == 422 and "MAGDI_DATA_ROOT" in r.text


def test_a_file_that_does_not_load_is_refused_before_it_is_queued(client, store, panel):
    r = client.post("/v1/jobs", json=job_body(panel, data_path="README.md", format="gsm8k"), headers=AUTH)
    assert r.status_code == 422 and "could not be read as gsm8k" in r.text
    r = client.post("/v1/jobs", json=job_body(panel, offset=100_000), headers=AUTH)
    assert r.status_code == 422 and "data_path" in r.text
    assert JobStore(store).list() == []


def test_caps_on_questions_and_a_strict_panel(make_client, store, panel):
    client = make_client(policy=POLICY.model_copy(update={"job_max_questions": 20}))
    r = client.post("/v1/jobs", json=job_body(panel, limit=21), headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "limit"]
    r = client.post("/v1/jobs", json=job_body(panel, limit=None), headers=AUTH)  # the whole file: 1319 rows
    assert r.status_code == 422 and "pass a limit" in r.text
    typo = job_body({"agents": [{**panel["agents"][0], "limits": {"rpmm": 5}}]})
    r = client.post("/v1/jobs", json=typo, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-2:] == ["limits", "rpmm"], r.text
    assert JobStore(store).list() == []
    assert client.post("/v1/jobs", json=job_body(panel, limit=20), headers=AUTH).status_code == 202


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


def test_a_batch_mode_jobs_batches_are_listed_with_their_provider_ids(client, store, panel, make_client):
    client.post("/v1/jobs", json=job_body(panel, name="bulk", mode="batch"), headers=AUTH)
    batches = BatchStore(store)
    first = BatchRecord(job_id="job-bulk", key="job-bulk/aaa", kind="offline", seq=0, model="sim-a", endpoint="sim",
                        custom_ids=["d1.alice.0", "d2.alice.0"], rounds=[0])
    second = BatchRecord(job_id="job-bulk", key="job-bulk/bbb", kind="offline", seq=1, model="sim-b", endpoint="sim",
                         custom_ids=["d1.bob.0"], rounds=[0])
    for batch in (first, second):
        batches.record(batch)
    first.batch_id, first.input_file_id, first.status, first.completed, first.failed = (
        "round-0-a", "/srv/batches/round-0-a.in.jsonl", "completed", 1, 1)
    batches.update_status(first)
    batches.mark_ingested([first.key])

    items = client.get("/v1/jobs/job-bulk/batches", headers=AUTH).json()["items"]
    assert [(b["key"], b["batch_id"], b["status"], b["total"], b["completed"], b["failed"], b["ingested"])
            for b in items] == [("job-bulk/aaa", "round-0-a", "completed", 2, 1, 1, True),
                                ("job-bulk/bbb", None, "uploading", 1, 0, 0, False)]
    assert items[0]["input_file_id"] == "/srv/batches/round-0-a.in.jsonl" and items[0]["rounds"] == [0]

    anonymous = make_client(open_reads=True).get("/v1/jobs/job-bulk/batches").json()["items"]
    assert anonymous[0]["batch_id"] == "round-0-a" and anonymous[0]["input_file_id"] == "<redacted>"
    client.post("/v1/jobs", json=job_body(panel, name="plain"), headers=AUTH)
    assert client.get("/v1/jobs/job-plain/batches", headers=AUTH).json()["items"] == []
    assert client.get("/v1/jobs/job-nope/batches", headers=AUTH).status_code == 404
