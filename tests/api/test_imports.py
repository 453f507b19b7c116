"""POST /v1/imports: whole-file validation first, one transaction, nothing half-written."""

from __future__ import annotations

import json

import pytest
from api_helpers import AUTH, dump

from magdi.formats import jsonl
from magdi.mag import canonical


def ref_record(i: int, *, answer: object = "4") -> dict:
    return {"question": f"What is {i} + 4 - {i}?", "gold_answer": "4",
            "alice_output_0": {"reasoning": "Add then subtract.", "answer": answer, "confidence_level": 0.9},
            "bob_output_0": {"reasoning": "I think 5.", "answer": "5", "confidence_level": "80%"},
            "alice_output_1": {"reasoning": "I agree with myself. Still 4.", "answer": "4", "confidence_level": 0.95},
            "bob_output_1": {"reasoning": "Now 4.", "answer": "4", "confidence_level": 0.7}}


def post(client, body: bytes | str, **params):
    content = body.encode() if isinstance(body, str) else body
    return client.post("/v1/imports", params=params, content=content, headers=AUTH)


def test_magdi_ref_import_then_reimport_adds_nothing(client, store):
    body = json.dumps([ref_record(i) for i in range(4)])
    r = post(client, body, format="magdi-ref", dataset="gsm8k")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["imported"] == 4 and len(out["debate_ids"]) == 4 and out["format"] == "magdi-ref"
    mag = client.get(f"/v1/debates/{out['debate_ids'][0]}", headers=AUTH).json()
    assert mag["question"]["dataset"] == "gsm8k" and mag["metrics"]["nodes"] == 4 and mag["team_answer"] == "4"
    before = dump(store.driver)
    assert post(client, body, format="magdi-ref", dataset="gsm8k").status_code == 201
    after = dump(store.driver)  # created_at is re-stamped; the same nodes (element ids) and links remain
    assert len(after["nodes"]) == len(before["nodes"]) and after["relationships"] == before["relationships"]


def test_jsonl_round_trip_through_export_and_import(client, store, make_debate):
    debates = [make_debate(i, job_id="job-r") for i in range(3)]
    store.write_debates(debates)
    exported = client.get("/v1/exports/jsonl", headers=AUTH).text
    for d in debates:
        store.delete_debate(d.id)
    r = post(client, exported, format="jsonl")
    assert r.status_code == 201 and sorted(r.json()["debate_ids"]) == sorted(d.id for d in debates)
    assert all(store.get_debate(d.id) == canonical(d) for d in debates)
    assert post(client, exported, format="jsonl", dataset="aqua").status_code == 422  # dataset mismatch


@pytest.mark.parametrize(("body", "params", "needle"), [
    ("[]", {"format": "magdi-ref", "dataset": "gsm8k"}, "no `<agent>_output_<round>`"),
    ("{not json", {"format": "magdi-ref", "dataset": "gsm8k"}, "not valid JSON"),
    ("[1, 2]", {"format": "magdi-ref", "dataset": "gsm8k"}, "record"),
    ("", {"format": "jsonl"}, "no MAGs"),
    ('{"question": 1}\n', {"format": "jsonl"}, "line 1"),
    (b"\xff\xfe[]", {"format": "magdi-ref", "dataset": "gsm8k"}, "UTF-8"),
    ("[]", {"format": "magdi-ref"}, "dataset"),
    ("[]", {"format": "csv", "dataset": "gsm8k"}, "format"),
    ("[]", {"dataset": "gsm8k"}, "format"),
    ("[]", {"format": "magdi-ref", "dataset": "bad name!"}, "dataset"),
])
def test_bad_bodies_and_parameters_are_422(client, store, body, params, needle):
    before = dump(store.driver)
    r = post(client, body, **params)
    assert r.status_code == 422, r.text
    assert needle in r.text
    assert dump(store.driver) == before


def test_one_bad_record_means_nothing_is_written(client, store, make_debate):
    store.write_debate(make_debate(99))
    before = dump(store.driver)
    records = [ref_record(i) for i in range(50)]
    records[37]["bob_output_1"] = {"reasoning": "x", "answer": "4", "confidence_level": "very sure"}
    r = post(client, json.dumps(records), format="magdi-ref", dataset="gsm8k")
    assert r.status_code == 422
    assert "record 37" in r.json()["detail"] and "bob_output_1" in r.json()["detail"]
    assert "/tmp" not in r.json()["detail"]  # the server's temp path is not leaked
    assert dump(store.driver) == before

    good = [jsonl.to_line(make_debate(i)) for i in range(5)]
    bad = good[:3] + ['{"format": "magdi-mag/1", "question": {"dataset": "x"}}'] + good[3:]
    r = post(client, "\n".join(bad), format="jsonl")
    assert r.status_code == 422 and "line 4" in r.json()["detail"]
    assert dump(store.driver) == before


def test_oversize_body_is_413(make_client, store):
    client = make_client(max_body_bytes=4096)
    before = dump(store.driver)
    body = json.dumps([ref_record(i) for i in range(100)])
    assert len(body) > 4096
    r = post(client, body, format="magdi-ref", dataset="gsm8k")
    assert r.status_code == 413 and "4096" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000].encode()

    r = client.post("/v1/imports", params={"format": "magdi-ref", "dataset": "gsm8k"}, content=chunks(),
                    headers=AUTH)
    assert r.status_code == 413
    assert dump(store.driver) == before
