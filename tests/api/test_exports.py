"""GET /v1/exports/{format}: NDJSON streams of every format, filtered, with provenance."""

from __future__ import annotations

import json

import pytest
from api_helpers import AUTH

from magdi.formats import jsonl
from magdi.formats.sft import ANSWER_JOINER
from magdi.mag import canonical


def lines(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def seeded(store, make_debate):
    debates = [make_debate(i, job_id="job-e" if i < 3 else "job-f", dataset="gsm8k" if i < 5 else "aqua")
               for i in range(7)]
    store.write_debates(debates)
    return {d.id: d for d in debates}


def test_jsonl_export_is_lossless_and_streams_across_pages(make_client, seeded):
    client = make_client(export_batch_size=2)  # 7 MAGs = 4 Neo4j pages
    records = lines(client.get("/v1/exports/jsonl", headers=AUTH))
    assert [r["id"] for r in records] == sorted(seeded)
    for r in records:
        assert jsonl.from_line(json.dumps(r), where="export") == canonical(seeded[r["id"]])


def test_filters_by_dataset_and_job(client, seeded):
    by_dataset = lines(client.get("/v1/exports/jsonl", params={"dataset": "aqua"}, headers=AUTH))
    assert {r["id"] for r in by_dataset} == {i for i, d in seeded.items() if d.question.dataset == "aqua"}
    by_job = lines(client.get("/v1/exports/magdi-ref", params={"job": "job-e"}, headers=AUTH))
    assert len(by_job) == 3 and all("alice_output_0" in r and "question" in r for r in by_job)
    assert lines(client.get("/v1/exports/sft", params={"dataset": "none"}, headers=AUTH)) == []


def test_sft_records_are_correct_responses_with_provenance(client, seeded):
    records = lines(client.get("/v1/exports/sft", headers=AUTH))
    # make_debate: agent k is right in round r iff (i + k + r) is even: 3 of 6 responses per MAG
    assert len(records) == 7 * 3
    for rec in records:
        user, assistant = rec["messages"]
        meta = rec["metadata"]
        debate = seeded[meta["debate_id"]]
        node = debate.response(meta["agent"], meta["round"])
        assert user == {"role": "user", "content": debate.question.text}
        assert assistant["role"] == "assistant" and node.correct is True
        assert assistant["content"] == node.reasoning + ANSWER_JOINER + node.answer
        assert meta["node_id"] == debate.response_id(node.agent, node.round)
        assert meta["model"] == node.model and meta["prompt_hash"] == node.prompt_hash
    # one JSON type per field across records: what datasets.load_dataset("json") needs
    assert len({json.dumps(_types(r), sort_keys=True) for r in records}) == 1


def test_dpo_pairs_come_from_one_mag(client, seeded):
    records = lines(client.get("/v1/exports/dpo", headers=AUTH))
    assert len(records) == 7 * 3  # one pair per incorrect response
    for rec in records:
        meta = rec["metadata"]
        debate = seeded[meta["debate_id"]]
        chosen = debate.response(meta["chosen"]["agent"], meta["chosen"]["round"])
        rejected = debate.response(meta["rejected"]["agent"], meta["rejected"]["round"])
        assert chosen.correct is True and rejected.correct is False
        assert rec["prompt"] == [{"role": "user", "content": debate.question.text}]
        assert rec["chosen"][0]["content"].endswith(ANSWER_JOINER + chosen.answer)
        assert rec["rejected"][0]["content"].endswith(ANSWER_JOINER + rejected.answer)
        assert meta["chosen"]["node_id"] == debate.response_id(chosen.agent, chosen.round)
        assert chosen.round == rejected.round  # a correct answer exists in every round of these MAGs


def test_unknown_format_is_422(client):
    r = client.get("/v1/exports/csv", headers=AUTH)
    assert r.status_code == 422 and "fmt" in r.text


def test_sft_export_loads_with_datasets(client, seeded, tmp_path):
    datasets = pytest.importorskip("datasets", reason="the `datasets` package is not installed")
    path = tmp_path / "sft.jsonl"
    path.write_text(client.get("/v1/exports/sft", headers=AUTH).text)
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(loaded) == 21 and loaded[0]["messages"][0]["role"] == "user"


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value[:1]]
    return type(value).__name__ if value is not None else "null"
