"""Batched MAG writes (one transaction, a few UNWIND queries) vs two ways of writing without UNWIND.

    .venv/bin/python benchmarks/ingest.py --mags 200

Baselines, both with the same per-node and per-edge Cypher a careful user would write:
1. every query auto-committed on its own (one commit per node and edge);
2. one transaction per MAG running those queries (one commit per MAG).

All writers store the same MAGs into the same Neo4j (a managed server started for the run and
stopped by pid at the end, or MAGDI_NEO4J_URI if set), the database is wiped between them, and
every result is checked to be the same graph before the ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def node_queries(debate: Debate) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Cypher a careful user writes without UNWIND: one query per node and per relationship."""
    q = records.question_row(debate.question)
    yield "MERGE (n:Question {id: $id}) SET n += $p", {"id": q["id"], "p": q}
    for a in debate.panel:
        row = records.agent_row(a)
        yield "MERGE (n:Agent {id: $id}) SET n += $p", {"id": row["id"], "p": row}
    debate_id = debate.id
    d = {**records.debate_row(debate, debate_id), "created_at": debate.created_at}
    yield ("MERGE (n:Debate {id: $id}) SET n += $p WITH n MATCH (q:Question {id: $q}) MERGE (n)-[:ON]->(q)",
           {"id": d["id"], "p": d, "q": q["id"]})
    for r in debate.responses:
        row = records.response_row(debate, debate_id, r)
        yield ("MATCH (d:Debate {id: $d}) MATCH (a:Agent {id: $a}) MERGE (n:Response {id: $id}) SET n += $p "
               "MERGE (d)-[:HAS_RESPONSE]->(n) MERGE (n)-[:BY]->(a)",
               {"d": row["debate_id"], "a": row["agent_id"], "id": row["id"], "p": row["props"]})
    for e in debate.edges:
        row = records.edge_row(debate_id, e)
        yield ("MATCH (s:Response {id: $src}) MATCH (t:Response {id: $dst}) MERGE (s)-[x:INFORMS]->(t) "
               "SET x.same_agent = $same, x.debate_id = $d",
               {"src": row["src"], "dst": row["dst"], "same": row["same_agent"], "d": row["debate_id"]})


def per_node_write(driver: neo4j.Driver, debate: Debate) -> None:
    """Baseline 1: every node/edge query is its own auto-committed transaction."""
    for query, params in node_queries(debate):
        driver.execute_query(query, params)


def per_mag_tx_write(driver: neo4j.Driver, debate: Debate) -> None:
    """Baseline 2: the same queries, but one transaction (one commit) per MAG."""
    def tx(t: neo4j.ManagedTransaction) -> None:
        for query, params in node_queries(debate):
            t.run(query, params).consume()

    with driver.session() as session:
        session.execute_write(tx)


def one_by_one(write: Callable[[neo4j.Driver, Debate], None], driver: neo4j.Driver) -> Callable[[list[Debate]], None]:
    def write_all(debates: list[Debate]) -> None:
        for debate in debates:
            write(driver, debate)

    return write_all


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

    def batched_write(chunk: list[Debate]) -> None:
        for i in range(0, len(chunk), batch):
            store.write_debates(chunk[i : i + batch])

    writers: dict[str, Callable[[list[Debate]], None]] = {
        "one query (one commit) per node/edge": one_by_one(per_node_write, driver),
        "one transaction per MAG, query per node/edge": one_by_one(per_mag_tx_write, driver),
        f"batched UNWIND, {batch} MAGs/tx": batched_write,
    }
    seconds: dict[str, float] = {}
    expected = sorted((canonical(d) for d in debates), key=lambda d: d.id)
    try:
        for name, write in writers.items():
            write(synthetic(warmup, rounds=2))  # query plans cached and the JIT warm, on MAGs not timed
            wipe(driver)
            t0 = time.perf_counter()
            write(debates)
            seconds[name] = time.perf_counter() - t0
            assert sorted(store.iter_debates(), key=lambda d: d.id) == expected, f"{name} stored another graph"
            wipe(driver)
    finally:
        wipe(driver)
        driver.close()
    print(f"{n} MAGs, {nodes} response nodes, {edges} INFORMS edges (the same graph from every writer)")
    for name, secs in seconds.items():
        print(f"{name:<46}: {secs:8.2f} s  ({nodes / secs:8.0f} nodes/s)")
    ours = seconds[f"batched UNWIND, {batch} MAGs/tx"]
    for name in list(writers)[:2]:
        print(f"speed-up of batched UNWIND against {name}: {seconds[name] / ours:.1f}x")


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
