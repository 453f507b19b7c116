"""Batched MAG writes (one transaction, a few UNWIND queries) vs one query per node and edge.

    .venv/bin/python benchmarks/ingest.py --mags 200

Both writers store the same MAGs into the same Neo4j (a managed server started for the run and
stopped by pid at the end, or MAGDI_NEO4J_URI if set), the database is wiped between them, and
both results are checked to be the same graph before the ratio is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import neo4j

from magdi.mag import Agent, Debate, Question, Response, TaskType, canonical, full_visibility_edges
from magdi.settings import Neo4jSettings
from magdi.store import records
from magdi.store.connection import open_driver
from magdi.store.graph_store import GraphStore
from magdi.store.server import ManagedNeo4j


def synthetic(n: int, agents: int = 3, rounds: int = 3) -> list[Debate]:
    names = [f"agent{k}" for k in range(agents)]
    out = []
    for i in range(n):
        responses = [
            Response(agent=a, round=r, reasoning=f"Step by step reasoning {i}/{a}/{r}. " * 8, answer=str(i % 7),
                     confidence=0.9, recalibrated_confidence=0.8, correct=(i + r) % 2 == 0, raw_text="{}",
                     tokens_in=300, tokens_out=120, latency_s=1.0, model=a)
            for a in names for r in range(rounds)
        ]
        out.append(Debate(
            question=Question(dataset="bench", qid=str(i), text=f"Question {i}?", task=TaskType.NUMBER,
                              gold_answer="0"),
            panel=[Agent(name=a, model=a) for a in names], responses=responses,
            edges=full_visibility_edges(responses), rounds_used=rounds,
        ))
    return out


def per_node_write(driver: neo4j.Driver, debate: Debate) -> None:
    """The naive writer: one auto-commit query per node and per relationship (the baseline)."""
    q = records.question_row(debate.question)
    driver.execute_query("MERGE (n:Question {id: $id}) SET n += $p", id=q["id"], p=q)
    for a in debate.panel:
        row = records.agent_row(a)
        driver.execute_query("MERGE (n:Agent {id: $id}) SET n += $p", id=row["id"], p=row)
    d = records.debate_row(debate)
    driver.execute_query(
        "MERGE (n:Debate {id: $id}) SET n += $p WITH n MATCH (q:Question {id: $q}) MERGE (n)-[:ON]->(q)",
        id=d["id"], p=d, q=q["id"],
    )
    for r in debate.responses:
        row = records.response_row(debate, r)
        driver.execute_query(
            "MATCH (d:Debate {id: $d}) MATCH (a:Agent {id: $a}) MERGE (n:Response {id: $id}) SET n += $p "
            "MERGE (d)-[:HAS_RESPONSE]->(n) MERGE (n)-[:BY]->(a)",
            d=row["debate_id"], a=row["agent_id"], id=row["id"], p=row["props"],
        )
    for e in debate.edges:
        row = records.edge_row(debate, e)
        driver.execute_query(
            "MATCH (s:Response {id: $src}) MATCH (t:Response {id: $dst}) MERGE (s)-[x:INFORMS]->(t) "
            "SET x.same_agent = $same, x.debate_id = $d",
            src=row["src"], dst=row["dst"], same=row["same_agent"], d=row["debate_id"],
        )


def wipe(driver: neo4j.Driver) -> None:
    with driver.session() as s:
        s.run("MATCH (n) WHERE NOT n:SchemaVersion CALL (n) { DETACH DELETE n } IN TRANSACTIONS").consume()


def run(settings: Neo4jSettings, n: int, batch: int, warmup: int) -> None:
    debates = synthetic(n)
    nodes = sum(len(d.responses) for d in debates)
    edges = sum(len(d.edges) for d in debates)
    driver = open_driver(settings)
    store = GraphStore(driver)
    store.ensure_schema()
    try:
        # steady state for both: query plans cached and the JVM's JIT warm, on MAGs not timed
        for d in synthetic(warmup, rounds=2):
            per_node_write(driver, d)
        store.write_debates(synthetic(warmup, rounds=2))
        wipe(driver)
        t0 = time.perf_counter()
        for d in debates:
            per_node_write(driver, d)
        naive = time.perf_counter() - t0
        naive_back = sorted((store.get_debate(d.id) for d in debates), key=lambda d: d.id)
        wipe(driver)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            store.write_debates(debates[i : i + batch])
        batched = time.perf_counter() - t0
        batched_back = sorted(store.iter_debates(), key=lambda d: d.id)
        assert batched_back == naive_back == sorted((canonical(d) for d in debates), key=lambda d: d.id)
    finally:
        wipe(driver)
        driver.close()
    print(f"{n} MAGs, {nodes} response nodes, {edges} INFORMS edges (same graph from both writers)")
    print(f"one query per node/edge : {naive:8.2f} s  ({nodes / naive:8.0f} nodes/s)")
    print(f"batched UNWIND, {batch:3d}/tx : {batched:8.2f} s  ({nodes / batched:8.0f} nodes/s)")
    print(f"speed-up: {naive / batched:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mags", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100, help="MAGs per batched transaction")
    parser.add_argument("--warmup", type=int, default=20, help="untimed MAGs written first by each writer")
    args = parser.parse_args()
    if os.environ.get("MAGDI_NEO4J_URI"):
        run(Neo4jSettings(), args.mags, args.batch, args.warmup)
        return
    with tempfile.TemporaryDirectory() as tmp, ManagedNeo4j(Path(tmp), auth=False) as info:
        run(Neo4jSettings(neo4j_uri=info.uri), args.mags, args.batch, args.warmup)


if __name__ == "__main__":
    sys.exit(main())
