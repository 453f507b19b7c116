"""Operations: lossless backup/restore, `magdi jobs`, and idempotent schema migrations."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import neo4j
from generator_helpers import panel_dict
from typer.testing import CliRunner

from magdi.mag import JobStatus
from magdi.panel import parse_panel
from magdi.store import schema
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.generator.jobrun import new_worker_id, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import ProtocolConfig
from services.generator.settings import GeneratorSettings

runner = CliRunner()


def cli(*args: str) -> Any:
    from magdi.cli import app

    return runner.invoke(app, list(args))


def full_dump(driver: neo4j.Driver) -> dict[str, list[str]]:
    """Every node (labels + all properties, typed) and relationship (type + properties + both ends)."""
    def canon(labels: list[str], props: dict[str, Any]) -> str:
        return repr((sorted(labels), sorted((k, repr(v)) for k, v in props.items())))

    nodes, _, _ = driver.execute_query("MATCH (n) WHERE NOT n:SchemaVersion RETURN labels(n) AS l, properties(n) AS p")
    rels, _, _ = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN labels(a) AS la, properties(a) AS pa, type(r) AS t, properties(r) AS pr, "
        "labels(b) AS lb, properties(b) AS pb")
    return {
        "nodes": sorted(canon(r["l"], r["p"]) for r in nodes),
        "relationships": sorted(repr((canon(r["la"], r["pa"]), r["t"], sorted((k, repr(v)) for k, v in r["pr"].items()),
                                      canon(r["lb"], r["pb"]))) for r in rels),
    }


def run_small_job(store: GraphStore, base_url: str, gsm8k: dict[str, Path], name: str, n: int = 3) -> str:
    panel = parse_panel(panel_dict(base_url))
    spec = build_spec(name=name, dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=800, limit=n, panel=panel, protocol=ProtocolConfig(max_rounds=1))
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=n, lease_s=30)
    t0 = time.monotonic()
    jobs.create(spec, total=n, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=t0))
    assert result.status is JobStatus.COMPLETE, result.errors
    return spec.id


def test_backup_wipe_restore_is_lossless(store: GraphStore, neo4j_env, make_debate, start_panel,  # noqa: ANN001
                                         gsm8k: dict[str, Path], tmp_path: Path) -> None:
    sim = start_panel(latency_s=0.01, error_rate=0.2)
    run_small_job(store, sim.base_url, gsm8k, "backed-up")
    store.write_debates([make_debate(i, dataset="strategyqa") for i in range(3)])
    store.driver.execute_query(  # every property type the graph may hold, on a node and a relationship
        "MATCH (q:Question) WITH q LIMIT 1 CREATE (e:EvalRun {id: 'eval-1', model: 'tiny', accuracy: 0.5, n: 3, "
        "ok: true, at: datetime(), day: date(), took: duration('PT1.5S'), tags: ['a', 'b`c'], "
        "scores: [0.25, 1.0], blob: $blob, unicode: 'Ünïcødé ✓'})-[:EVALUATED_ON {predicted: '18', correct: true, "
        "at: datetime()}]->(q)", blob=b"\x00\x01\xff")
    before = full_dump(store.driver)
    assert len(before["nodes"]) > 20 and len(before["relationships"]) > 20
    out = tmp_path / "backup.jsonl"
    made = cli("db", "backup", "--out", str(out))
    assert made.exit_code == 0, made.output
    refused = cli("db", "restore", str(out))
    assert refused.exit_code == 2 and "--wipe" in refused.output, "restore into a non-empty database is refused"
    with store.driver.session() as session:  # everything but the schema version, as the root conftest wipes
        session.run("MATCH (n) WHERE NOT n:SchemaVersion CALL (n) { DETACH DELETE n } IN TRANSACTIONS").consume()
    assert full_dump(store.driver)["nodes"] == []
    restored = cli("db", "restore", str(out))
    assert restored.exit_code == 0, restored.output
    assert full_dump(store.driver) == before
    tmp, _, _ = store.driver.execute_query("MATCH (n:_MagdiRestore) RETURN count(n) AS n")
    assert tmp[0]["n"] == 0
    again = cli("db", "restore", "--wipe", str(out))  # restore over existing data replaces it
    assert again.exit_code == 0 and full_dump(store.driver) == before
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(out.read_text().splitlines(keepends=True)[:-3]))
    bad = cli("db", "restore", "--wipe", str(cut))
    assert bad.exit_code == 2 and "truncated backup" in " ".join(bad.output.split())
    assert full_dump(store.driver) == before, "a refused restore changes nothing"


def test_jobs_list_and_status(store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path]) -> None:  # noqa: ANN001
    sim = start_panel(window_s=1.0, latency_s=0.01, error_rate=0.3, rpm_limit=3)
    job_id = run_small_job(store, sim.base_url, gsm8k, "shown")
    listed = cli("jobs", "list")
    assert listed.exit_code == 0 and "shown" in listed.output and "complete" in listed.output, listed.output
    shown = cli("jobs", "status", "shown", "--format", "json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    job = JobStore(store).get(job_id)
    assert data["status"] == "complete" and data["done"] == job.done == 3 and data["total"] == 3
    assert data["tokens_in"] == job.tokens_in > 0 and data["progress"] == 1.0 and data["lease_owner"] is None
    faults = sim.stats()["faults"]
    assert data["retries"] >= faults.get("server_error", 0) > 0, (data, faults)
    assert data["rate_limit_waits"] == faults.get("rate_limited", 0) > 0, (data, faults)
    assert data["calls"] >= data["retries"] + data["rate_limit_waits"]
    assert (data["store_outages"], data["store_held_s"]) == (0, 0)  # Neo4j stayed up
    table = cli("jobs", "status", "shown")
    assert table.exit_code == 0 and "429 waits" in " ".join(table.output.split())
    assert "Neo4j outages (writes held, s)" in " ".join(table.output.split())
    missing = cli("jobs", "status", "nope")
    assert missing.exit_code == 1 and "no job named 'nope'" in missing.output


def test_the_api_shows_the_counters_of_a_job_that_ran(store: GraphStore, neo4j_env, start_panel,  # noqa: ANN001
                                                      gsm8k: dict[str, Path]) -> None:
    """The endpoint and store counters a run records are fields of the job, in the API as in the CLI."""
    from fastapi.testclient import TestClient

    from services.api.main import create_app
    from services.api.settings import ApiSettings

    sim = start_panel(window_s=1.0, latency_s=0.01, error_rate=0.3, rpm_limit=3)
    job_id = run_small_job(store, sim.base_url, gsm8k, "counted")
    idle = build_spec(name="idle", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k", offset=0, limit=1,
                      panel=parse_panel(panel_dict(sim.base_url)), protocol=ProtocolConfig(max_rounds=1))
    JobStore(store).create(idle, total=1)
    counters = ("calls", "retries", "rate_limit_waits", "call_failures", "store_outages", "store_held_s")
    token = "ops-token-0123456789abcdef"
    with TestClient(create_app(ApiSettings(token=token, neo4j=neo4j_env)), base_url="http://localhost") as client:
        auth = {"Authorization": f"Bearer {token}"}
        ran = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        never_ran = client.get("/v1/jobs/idle", headers=auth).json()
        listed = {j["id"]: j for j in client.get("/v1/jobs", headers=auth).json()["items"]}
    faults = sim.stats()["faults"]
    assert ran["retries"] >= faults.get("server_error", 0) > 0, (ran, faults)
    assert ran["rate_limit_waits"] == faults.get("rate_limited", 0) > 0, (ran, faults)
    assert ran["calls"] >= ran["retries"] + ran["rate_limit_waits"] and ran["call_failures"] >= ran["retries"]
    assert (ran["store_outages"], ran["store_held_s"]) == (0, 0)
    assert {k: listed[job_id][k] for k in counters} == {k: ran[k] for k in counters}
    shown = json.loads(cli("jobs", "status", "counted", "--format", "json").output)
    assert {k: shown[k] for k in counters} == {k: ran[k] for k in counters}, "one job model, one view"
    assert all(never_ran[k] is None for k in counters), never_ran  # nothing recorded until a run finishes


def test_migrations_are_idempotent_and_upgrade_a_version_0_database(store: GraphStore) -> None:
    driver = store.driver

    def schema_names() -> set[str]:
        constraints, _, _ = driver.execute_query("SHOW CONSTRAINTS YIELD name")
        indexes, _, _ = driver.execute_query("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name")
        return {r["name"] for r in [*constraints, *indexes]}

    assert schema.apply(driver) == schema.SCHEMA_VERSION
    first = schema_names()
    assert schema.apply(driver) == schema.SCHEMA_VERSION and schema_names() == first, "a second run changes nothing"
    versions, _, _ = driver.execute_query("MATCH (s:SchemaVersion) RETURN count(s) AS n")
    assert versions[0]["n"] == 1
    try:  # a database from before migrations existed: no constraints, no indexes, no version node
        for name in first:
            kind = "CONSTRAINT" if name in {r["name"] for r in driver.execute_query("SHOW CONSTRAINTS YIELD name")[0]} \
                else "INDEX"
            driver.execute_query(f"DROP {kind} {name} IF EXISTS")
        driver.execute_query("MATCH (s:SchemaVersion) DELETE s")
        assert schema.current_version(driver) == 0 and not schema_names() & first
    finally:
        assert schema.apply(driver) == schema.SCHEMA_VERSION
    assert schema_names() == first
