"""Concurrent start-up: several processes migrate a fresh database at the same instant.

`docker compose up` starts the API and a worker together against an empty Neo4j, and each
applies the schema migrations at start. Four processes are spawned together and, at a barrier,
call `schema.apply` at once; twenty rounds. Before each round the database goes back to "fresh"
(no constraint, no index, no version node). Even rounds run on an empty database (where
concurrent schema statements used to fail with `EquivalentSchemaRuleAlreadyExists`), odd rounds
with one stored MAG, which must come through every migration unchanged.
"""

from __future__ import annotations

import multiprocessing
import queue
import time

from reliability_helpers import Row, graph_snapshot, snapshot_diff, startup_worker

from magdi.settings import Neo4jSettings
from magdi.store import schema
from magdi.store.graph_store import GraphStore

PROCESSES = 4
ROUNDS = 20


def make_fresh(driver) -> None:  # noqa: ANN001
    """Drop every constraint and index magdi made, and the version node: a database before any start."""
    for rec in driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN name").records:
        driver.execute_query(f"DROP CONSTRAINT `{rec['name']}` IF EXISTS")
    for rec in driver.execute_query("SHOW INDEXES YIELD name, type, owningConstraint "
                                    "WHERE type <> 'LOOKUP' AND owningConstraint IS NULL RETURN name").records:
        driver.execute_query(f"DROP INDEX `{rec['name']}` IF EXISTS")
    driver.execute_query("MATCH (s:SchemaVersion) DETACH DELETE s")


def rule_names(driver) -> set[str]:  # noqa: ANN001
    constraints = {r["name"] for r in driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN name").records}
    indexes = {r["name"] for r in driver.execute_query(
        "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name").records}
    return constraints | indexes


def test_four_processes_migrate_a_fresh_database_at_once_twenty_times(store: GraphStore, make_debate,  # noqa: ANN001
                                                                      neo4j_server: Neo4jSettings,
                                                                      record) -> None:  # noqa: ANN001
    driver = store.driver
    expected_rules = rule_names(driver)
    mag = make_debate(1, job_id="job-startup")
    uri, user, password = neo4j_server.resolve()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=startup_worker, args=(uri, user, password, ROUNDS, barrier, results), daemon=True)
             for _ in range(PROCESSES)]
    outcomes: list[tuple[int, int | None, str | None]] = []
    problems: list[str] = []
    diffs = {"lost": 0, "changed": 0, "added": 0}
    t0 = time.monotonic()
    try:
        for p in procs:
            p.start()
        for rnd in range(ROUNDS):
            store.rows("MATCH (n) WHERE NOT n:SchemaVersion DETACH DELETE n", write=True)
            if rnd % 2:
                store.write_debate(mag)
            before = graph_snapshot(driver)
            make_fresh(driver)
            assert schema.current_version(driver) == 0 and not rule_names(driver)
            barrier.wait(timeout=300)  # go
            barrier.wait(timeout=300)  # all four returned (or failed)
            for _ in range(PROCESSES):
                outcomes.append(results.get(timeout=60))
            versions = [r["v"] for r in driver.execute_query("MATCH (s:SchemaVersion) RETURN s.version AS v").records]
            if versions != [schema.SCHEMA_VERSION]:
                problems.append(f"round {rnd}: version nodes {versions}")
            missing = expected_rules - rule_names(driver)
            if missing:
                problems.append(f"round {rnd}: missing {sorted(missing)}")
            for key, n in snapshot_diff(before, graph_snapshot(driver)).items():
                diffs[key] += n
        for p in procs:
            p.join(timeout=60)
    except queue.Empty:
        problems.append("a process gave no outcome within 60 s")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()  # by its own handle (pid)
                p.join(timeout=10)
        make_fresh(driver)  # whatever a failed round left behind; then the current schema for the session
        schema.apply(driver)
    failed = [o for o in outcomes if o[2] is not None]
    record(Row(
        fault="concurrent start-up",
        injected=f"{PROCESSES} processes spawned together call `schema.apply` at one barrier on a fresh database "
                 f"(no constraint, index or version node), {ROUNDS} rounds; every other round with one stored MAG",
        happened=f"{len(outcomes)} migrations, {len(failed)} failed; every round ended with one `:SchemaVersion` at "
                 f"version {schema.SCHEMA_VERSION} and all {len(expected_rules)} constraints and indexes; the "
                 "stored MAG identical after each round"
                 + (f"; problems: {problems[:3]}" if problems else ""),
        nodes_lost=diffs["lost"], nodes_duplicated=diffs["added"], nodes_changed=diffs["changed"], recover_s=None,
        details={"seconds": round(time.monotonic() - t0, 1), "failed": failed[:5]},
    ))
    assert not failed, failed[:5]
    assert len(outcomes) == PROCESSES * ROUNDS and {o[1] for o in outcomes} == {schema.SCHEMA_VERSION}
    assert not problems, problems
    assert diffs == {"lost": 0, "changed": 0, "added": 0}, diffs
