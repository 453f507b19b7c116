"""REST overhead: `GET /v1/debates/{id}` and a Cypher aggregate over HTTP vs the same query on the bare driver.

    .venv/bin/python benchmarks/api.py --mags 200 --requests 300 --threads 4

A managed Neo4j is started for the run (or MAGDI_NEO4J_URI is used: then only this benchmark's
own MAGs, dataset `bench-api`, are written and deleted again), MAGs are written, and the API runs
as a uvicorn subprocess on 127.0.0.1 with a token. A bounded number of requests is sent from a
small thread pool (one keep-alive httpx client per thread), after a warm-up; the baseline sends
the same Cypher through `neo4j.Driver.execute_query` from a pool of the same size. Prints p50/p99
of both and the overhead ratio. Every process started here is stopped by its pid.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import neo4j

from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from magdi.processes import NotReady, free_port, stop_process, wait_until_ready
from magdi.settings import Neo4jSettings
from magdi.store.connection import open_driver
from magdi.store.graph_store import MAG_PROJECTION, DebateFilter, GraphStore  # the API's exact read query
from magdi.store.server import ManagedNeo4j

DATASET = "bench-api"
AGGREGATE = (
    "MATCH (d:Debate {dataset: $dataset})-[:HAS_RESPONSE]->(r:Response) "
    "RETURN r.agent AS agent, r.round AS round, count(*) AS n, "
    "avg(CASE WHEN r.correct THEN 1.0 ELSE 0.0 END) AS accuracy ORDER BY agent, round"
)


def synthetic(n: int, agents: int = 3, rounds: int = 4) -> list[Debate]:
    names = [f"agent{k}" for k in range(agents)]
    out = []
    for i in range(n):
        responses = [
            Response(agent=a, round=r, reasoning=f"Reasoning {i}/{a}/{r}. " * 20, answer=str((i + k + r) % 3),
                     confidence=0.8, correct=(i + k + r) % 3 == 0, raw_text="{}", tokens_in=400, tokens_out=150,
                     model=a, prompt_hash=f"h{i}{k}{r}")
            for k, a in enumerate(names) for r in range(rounds)
        ]
        out.append(Debate(question=Question(dataset=DATASET, qid=str(i), text=f"Question {i}?", task=TaskType.NUMBER,
                                            gold_answer="0"),
                          panel=[Agent(name=a, model=a) for a in names], responses=responses,
                          edges=full_visibility_edges(responses), rounds_used=rounds, team_answer="0"))
    return out


def measure(call: Callable[[int], None], requests: int, threads: int, warmup: int) -> tuple[list[float], float]:
    """Latencies (s) of `requests` calls spread over `threads` workers, and the wall time."""
    for i in range(warmup):
        call(i)
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        call(i)
        elapsed = time.perf_counter() - t0
        with lock:
            latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(requests)))
    return latencies, time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def start_api(settings: Neo4jSettings, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "MAGDI_API_TOKEN": token, "MAGDI_NEO4J_URI": settings.neo4j_uri or "",
           "MAGDI_NEO4J_USER": settings.neo4j_user,
           "MAGDI_API_CYPHER_RATE_PER_MIN": "1000000"}  # one client measuring overhead, not a flood to throttle
    if settings.neo4j_password:
        env["MAGDI_NEO4J_PASSWORD"] = settings.neo4j_password.get_secret_value()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "services.api.main:create_app",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, f"{base}/readyz", timeout_s=60)
    except NotReady as exc:
        stop_process(proc, 15.0)
        raise RuntimeError(f"the API {exc}: {(proc.stderr.read() if proc.stderr else b'').decode()[-2000:]}") from None
    return proc, base


def run(settings: Neo4jSettings, mags: int, requests: int, threads: int) -> None:
    driver = open_driver(settings)
    store = GraphStore(driver)
    store.ensure_schema()
    debates = synthetic(mags)
    ids = [d.id for d in debates]
    token = secrets.token_urlsafe(32)
    proc = None
    try:
        for i in range(0, mags, 100):
            store.write_debates(debates[i:i + 100])
        proc, base = start_api(settings, token)
        local = threading.local()

        def http(method: str, path: str, **kw: object) -> httpx.Response:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            r = local.client.request(method, path, **kw)  # type: ignore[arg-type]
            r.raise_for_status()
            return r

        def bare(query: str, **params: object) -> None:
            driver.execute_query(query, parameters_=params, routing_=neo4j.RoutingControl.READ)

        by_id = "MATCH (d:Debate {id: $id})" + MAG_PROJECTION
        cases = {
            "GET /v1/debates/{id}": (lambda i: http("GET", f"/v1/debates/{ids[i % mags]}"),
                                     lambda i: bare(by_id, id=ids[i % mags])),
            "POST /v1/cypher (aggregate)": (lambda i: http("POST", "/v1/cypher", json={
                                                "query": AGGREGATE, "parameters": {"dataset": DATASET}}),
                                            lambda i: bare(AGGREGATE, dataset=DATASET)),
        }
        print(f"{mags} MAGs x {len(debates[0].responses)} nodes; {requests} requests per case, {threads} threads, "
              f"loopback uvicorn (1 worker) vs bare driver")
        print(f"{'case':32s} {'path':7s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>8s}")
        for name, (api_call, driver_call) in cases.items():
            results = {}
            for label, call in (("driver", driver_call), ("api", api_call)):
                lat, wall = measure(call, requests, threads, warmup=min(20, requests))
                results[label] = (pct(lat, 50), pct(lat, 99))
                print(f"{name:32s} {label:7s} {1000 * results[label][0]:8.2f} {1000 * results[label][1]:8.2f} "
                      f"{requests / wall:8.0f}")
            print(f"{'':32s} overhead p50 x{results['api'][0] / results['driver'][0]:.2f}, "
                  f"p99 x{results['api'][1] / results['driver'][1]:.2f}")
    finally:
        if proc is not None:
            stop_process(proc, 15.0)
        for debate_id in store.debate_ids(DebateFilter(dataset=DATASET)):
            store.delete_debate(debate_id)
        driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mags", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300, help="measured requests per case and path")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if os.environ.get("MAGDI_NEO4J_URI"):
        run(Neo4jSettings(), args.mags, args.requests, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp, ManagedNeo4j(Path(tmp), auth=True) as info:
        run(Neo4jSettings(neo4j_uri=info.uri, neo4j_user=info.user, neo4j_password=info.password),
            args.mags, args.requests, args.threads)


if __name__ == "__main__":
    sys.exit(main())
