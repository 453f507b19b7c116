"""API reads and Cypher in a bounded loop while a job writes to the same Neo4j.

The API is the real app (`services.api.main.create_app`) under FastAPI's TestClient; the job runs
in-process in a thread against the simulated panel. Every request must succeed, and no MAG may
be visible as complete before all of its rounds are: a debate is marked complete by its last
write, after every turn is committed, and `GET /v1/debates/{id}` reads a MAG in one query.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from generator_helpers import panel_dict
from reliability_helpers import Row, assert_clean, final_state, lost_and_duplicated

from magdi.mag import JobStatus
from magdi.panel import parse_panel
from magdi.settings import Neo4jSettings
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.api.main import create_app
from services.api.settings import ApiSettings
from services.generator.jobrun import JobResult, new_worker_id, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import ProtocolConfig
from services.generator.settings import GeneratorSettings

TOKEN = "reliability-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N = 6
INCOMPLETE = """
MATCH (d:Debate {status: 'complete'})-[:HAS_RESPONSE]->(r:Response)
WITH d, max(r.round) + 1 AS rounds, count(r) AS nodes, collect(DISTINCT r.agent) AS agents
WHERE rounds <> d.rounds_used OR NOT all(a IN d.agents WHERE a IN agents)
RETURN count(d) AS bad
"""


def check_complete(mag: dict[str, Any]) -> list[str]:
    """Problems of a MAG the API calls complete: every round's turns and edges must be there."""
    problems = []
    panel = [a["name"] for a in mag["panel"]]
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for node in mag["nodes"]:
        by_round.setdefault(node["round"], {})[node["agent"]] = node
    if sorted(by_round) != list(range(mag["rounds_used"])):
        problems.append(f"rounds {sorted(by_round)} but rounds_used {mag['rounds_used']}")
    active = set(panel)
    for rnd in sorted(by_round):
        missing = active - set(by_round[rnd])
        if missing:
            problems.append(f"round {rnd} lacks {sorted(missing)}")
        active = {a for a, n in by_round[rnd].items() if n["parse_status"] != "absent"}
    ids = {n["id"] for n in mag["nodes"]}
    problems += [f"edge to a missing node {e}" for e in mag["edges"] if e["source"] not in ids or e["target"] not in ids]
    if mag["team_answer"] is None:
        problems.append("complete without a team answer")
    return problems


def test_reads_and_cypher_while_a_job_writes(store: GraphStore, neo4j_server: Neo4jSettings, start_panel,  # noqa: ANN001
                                            gsm8k: dict[str, Path], record) -> None:  # noqa: ANN001
    sim = start_panel(latency_s=0.1)
    panel = parse_panel(panel_dict(sim.base_url))
    spec = build_spec(name="under-load", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=900, limit=N, panel=panel, protocol=ProtocolConfig(max_rounds=2))
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=4, lease_s=30, counters_every_s=0.5)
    outcome: dict[str, JobResult | BaseException] = {}

    t0 = time.monotonic()
    # created before the readers start: a job that does not exist yet is a 404 for GET /v1/debates?job=
    jobs.create(spec, total=N, owner=worker, lease_s=settings.lease_s)

    def job() -> None:
        try:
            outcome["result"] = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=t0))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = exc

    requests = errors = complete_seen = 0
    problems: list[str] = []
    latencies: list[float] = []
    app = create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server, cypher_rate_per_min=10_000))  # one busy client
    with TestClient(app, base_url="http://localhost") as client:
        thread = threading.Thread(target=job, daemon=True)
        t_start = time.monotonic()
        thread.start()
        deadline = t_start + 120
        while (thread.is_alive() or requests < 20) and time.monotonic() < deadline:
            t = time.monotonic()
            listing = client.get("/v1/debates", params={"job": spec.id, "limit": 100}, headers=AUTH)
            requests += 1
            if listing.status_code != 200:
                errors += 1
                problems.append(f"GET /v1/debates {listing.status_code}: {listing.text[:200]}")
                continue
            for item in listing.json()["items"]:
                mag = client.get(f"/v1/debates/{item['id']}", headers=AUTH)
                requests += 1
                if mag.status_code != 200:
                    errors += 1
                    problems.append(f"GET /v1/debates/{item['id']} {mag.status_code}")
                elif mag.json()["status"] == "complete":
                    complete_seen += 1
                    problems += [f"{item['id']}: {p}" for p in check_complete(mag.json())]
            for query in (INCOMPLETE, "MATCH (d:Debate) RETURN d.status AS s, count(*) AS n"):
                res = client.post("/v1/cypher", json={"query": query}, headers=AUTH)
                requests += 1
                if res.status_code != 200:
                    errors += 1
                    problems.append(f"POST /v1/cypher {res.status_code}: {res.text[:200]}")
                elif query is INCOMPLETE and res.json()["rows"] != [[0]]:
                    problems.append(f"Cypher saw a partial MAG marked complete: {res.json()['rows']}")
            latencies.append(time.monotonic() - t)
        thread.join(timeout=60)
    elapsed = time.monotonic() - t_start
    state = final_state(store, spec.id, N, sim.stats())
    lost, dup = lost_and_duplicated(state)
    record(Row(fault="API reads and Cypher under write load",
               injected=f"TestClient loop: GET /v1/debates, GET /v1/debates/{{id}}, 2 x POST /v1/cypher while a "
                        f"{N}-question job writes",
               happened=f"{requests} requests, {errors} errors, {complete_seen} complete MAGs read while writing, "
                        f"{len(problems)} partial MAGs seen as complete; p50 loop "
                        f"{sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms",
               nodes_lost=lost, nodes_duplicated=dup, recover_s=None,
               details={"problems": problems[:20], "elapsed_s": round(elapsed, 1)}))
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].status is JobStatus.COMPLETE
    assert errors == 0 and not problems, problems[:10]
    assert complete_seen > 0 and requests > 20
    assert_clean(state, N)
