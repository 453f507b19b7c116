"""A job by its name (`alpha`) or its id (`job-alpha`), the same everywhere: API, CLI, trainer.

An unknown job is never an empty answer: the API says 404, the CLI exits 1, the trainer raises, and
each names the jobs that exist.
"""

from __future__ import annotations

import json

import pytest
from api_helpers import AUTH
from typer.testing import CliRunner

from magdi.cli import app
from magdi.formats import jsonl
from magdi.mag import JobSpec
from magdi.store.jobs import JobStore
from trainer.sources import DataError, JsonlSource, Neo4jSource


@pytest.fixture
def jobs(store, make_debate):
    """Job `alpha` (a :Job node and 2 debates) and `beta` (3 imported debates whose job node was purged)."""
    JobStore(store).create(JobSpec(name="alpha", dataset="gsm8k", data_path="gsm8k/test.jsonl",
                                   panel={"agents": [{"name": "a", "model": "m", "base_url": "http://127.0.0.1:9/v1"}]}))
    debates = [make_debate(i, job_id="job-alpha") for i in range(2)]
    debates += [make_debate(i, job_id="job-beta") for i in range(2, 5)]
    store.write_debates(debates)
    return debates


def cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "TERM": "dumb"})


@pytest.mark.parametrize("ref", ["alpha", "job-alpha"])
def test_the_api_takes_a_name_or_an_id(client, jobs, ref):  # noqa: ARG001 - fixture writes
    listed = client.get("/v1/debates", params={"job": ref}, headers=AUTH).json()["items"]
    assert len(listed) == 2
    exported = client.get("/v1/exports/jsonl", params={"job": ref}, headers=AUTH).text.splitlines()
    assert len(exported) == 2
    assert client.get("/v1/stats", params={"job": ref}, headers=AUTH).json()["debates"] == 2
    assert client.get(f"/v1/jobs/{ref}", headers=AUTH).json()["id"] == "job-alpha"
    assert client.get("/v1/debates", params={"job": ref.replace("alpha", "beta")}, headers=AUTH).json()["items"]


@pytest.mark.parametrize("path", ["/v1/debates", "/v1/exports/jsonl", "/v1/stats"])
def test_an_unknown_job_filter_is_a_404_naming_the_jobs(client, jobs, path):  # noqa: ARG001
    r = client.get(path, params={"job": "nope"}, headers=AUTH)
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == "no job named 'nope'; jobs: alpha, beta"


def test_an_unknown_job_resource_is_a_404_naming_the_jobs(client, jobs):  # noqa: ARG001
    for method in ("GET", "DELETE"):
        r = client.request(method, "/v1/jobs/nope", headers=AUTH)
        assert r.status_code == 404 and r.json()["detail"] == "no job named 'nope'; jobs: alpha", r.text
    assert client.delete("/v1/jobs/alpha", params={"purge": "true"}, headers=AUTH).status_code == 204


def test_the_cli_takes_a_name_or_an_id(neo4j_env, jobs, tmp_path):  # noqa: ARG001
    for ref in ("alpha", "job-alpha"):
        stats = cli("stats", "--job", ref, "--format", "json")
        assert stats.exit_code == 0 and json.loads(stats.output)["debates"] == 2, stats.output
        out = tmp_path / f"{ref}.jsonl"
        assert cli("export", "--job", ref, "--out", str(out)).exit_code == 0
        assert len(out.read_text().splitlines()) == 2
        status = cli("jobs", "status", ref, "--format", "json")
        assert json.loads(status.output)["id"] == "job-alpha", status.output


def test_an_unknown_job_exits_1_naming_the_jobs(neo4j_env, jobs, tmp_path):  # noqa: ARG001
    out = tmp_path / "nope.jsonl"
    for args in (["stats", "--job", "nope"], ["export", "--job", "nope", "--out", str(out)]):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert "no job named 'nope'; jobs: alpha, beta" in result.output
    assert not out.exists()
    status = cli("jobs", "status", "nope")
    assert status.exit_code == 1 and "no job named 'nope'; jobs: alpha" in status.output


def test_the_trainer_takes_a_name_or_an_id(neo4j_env, jobs, tmp_path):
    path = tmp_path / "mags.jsonl"
    path.write_text("".join(jsonl.to_line(d) + "\n" for d in jobs))
    for ref in ("beta", "job-beta"):
        assert len(list(Neo4jSource(settings=neo4j_env, job_id=ref).iter_debates())) == 3
        assert len(list(JsonlSource(path, job_id=ref).iter_debates())) == 3
    with pytest.raises(DataError, match="data.job_id: no job named 'nope'; jobs: alpha, beta"):
        list(Neo4jSource(settings=neo4j_env, job_id="nope").iter_debates())
