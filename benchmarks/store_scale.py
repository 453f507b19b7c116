"""The store at scale: ingest, export, debate pages and trainer loaders at 1k, 10k and 100k MAGs.

    .venv/bin/python -m benchmarks.store_scale --sizes 1000,10000,100000   # hours on 2 shared cores
    .venv/bin/python -m benchmarks.store_scale --sizes 1000,10000          # about 15 minutes

Realistic MAGs: 3 agents x 2-4 rounds, 1-2 KB of reasoning per response plus the raw JSON output
(so about 25 KB of text per MAG), full-visibility INFORMS edges, 3 large datasets and one with 1 %
of the MAGs, 10 jobs. The store grows from one size to the next, and at each size:

- ingest: seconds per MAG for the MAGs added (batched UNWIND, `--batch` MAGs per transaction);
- export: `magdi export --format jsonl` of the whole store in its own process: MAGs/s and that
  process's peak RSS (must stay flat as the store grows);
- pages: `GET /v1/debates` (uvicorn on loopback, with a token): the first page and a deep one
  (cursor at the middle of the matches), with no filter, the 1 % dataset and one job, p50 over
  `--requests` calls; beside them the store's page query as it was before (no cursor clause on
  the first page, ORDER BY d.id alone) and as it is, through the bare driver, p50 and PROFILE db hits;
- loaders: the trainer's `Neo4jSource` against `JsonlSource` on the exported file, each in its own
  process over the same MAGs (`--loader-mags` at most), and the Neo4j read as it was before
  (the driver without its Rust extension, `Record.data()`), in MAGs/s.

Uses a throwaway managed Neo4j (stopped by pid at the end), or MAGDI_NEO4J_URI if set (WIPED).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from magdi.mag import Agent, Debate, DebateStatus, Question, Response, TaskType, full_visibility_edges
from magdi.settings import Neo4jSettings

AGENTS = ("chatgpt", "claude", "bard")
BIG_DATASETS = ("gsm8k", "strategyqa", "ecqa")
RARE_DATASET = "arc"  # 1 % of the MAGs: a selective filter
JOBS = 10
WORDS = ("the", "so", "each", "total", "number", "of", "apples", "is", "then", "we", "add", "subtract", "times",
         "divided", "by", "gives", "answer", "because", "first", "second", "remaining", "cost", "dollars", "per",
         "hour", "week", "half", "twice", "more", "less", "than", "left", "after", "she", "he", "they", "buys")
PAGE = 50
# The page query as it was before this benchmark's fixes: no cursor clause on the first page, ORDER BY d.id.
PAGE_BEFORE = "MATCH (d:Debate){where} WITH d ORDER BY d.id LIMIT $limit RETURN d {{.*}} AS d"


def dataset_of(i: int) -> str:
    return RARE_DATASET if i % 100 == 0 else BIG_DATASETS[i % 3]


def job_of(i: int) -> str:
    return f"job-scale-{i % JOBS}"


def text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return " ".join(words)


def realistic(i: int) -> Debate:
    """MAG number i: deterministic, 3 agents x 2-4 rounds, 1-2 KB reasoning per response."""
    rng = random.Random(i)
    rounds = 2 + i % 3
    gold = str(rng.randint(1, 500))
    question = Question(dataset=dataset_of(i), qid=str(i), text=text(rng, 300) + "?", task=TaskType.NUMBER,
                        gold_answer=gold)
    responses = []
    for rnd in range(rounds):
        for agent in AGENTS:
            answer = gold if rng.random() < 0.7 else str(rng.randint(1, 500))
            reasoning = text(rng, rng.randint(1000, 2000))
            confidence = round(rng.uniform(0.5, 1.0), 2)
            raw = json.dumps({"reasoning": reasoning, "answer": answer, "confidence_level": confidence})
            responses.append(Response(agent=agent, round=rnd, reasoning=reasoning, answer=answer, confidence=confidence,
                                      recalibrated_confidence=confidence, correct=answer == gold, raw_text=raw,
                                      model=f"{agent}-model", tokens_in=rng.randint(400, 1600),
                                      tokens_out=rng.randint(250, 500), latency_s=rng.uniform(1, 9),
                                      finish_reason="stop", prompt_hash=f"{i:08x}{rnd}{agent}", attempts=1,
                                      cost_usd=0.002))
    final = [r.answer for r in responses if r.round == rounds - 1]
    team = max(set(final), key=final.count)
    return Debate(question=question, job_id=job_of(i), protocol="reconcile",
                  panel=[Agent(name=a, model=f"{a}-model") for a in AGENTS], status=DebateStatus.COMPLETE,
                  responses=responses, edges=full_visibility_edges(responses), team_answer=team,
                  team_correct=team == gold, majority_answer=team, consensus=len(set(final)) == 1, rounds_used=rounds)


@dataclass
class SizeResult:
    size: int
    ingest_s_per_mag: float
    export_mags_per_s: float = 0.0
    export_peak_mib: float = 0.0
    export_bytes: int = 0
    pages: list[dict[str, Any]] = field(default_factory=list)
    loaders: dict[str, float] = field(default_factory=dict)


def p50_ms(call: Callable[[], object], n: int) -> float:
    call()  # warm: plan cached, connection open
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def db_hits(driver: Any, query: str, params: dict[str, Any]) -> int:
    with driver.session() as session:
        profile = session.run("PROFILE " + query, params).consume().profile

    def total(op: dict[str, Any]) -> int:
        return op.get("dbHits", 0) + sum(total(c) for c in op.get("children", []))

    return total(profile)


def child(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """Run a child process to its end; (its last JSON stdout line, its own peak RSS in MiB via wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[:4]} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        lines = [x for x in out.read().decode().splitlines() if x.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), usage.ru_maxrss / 1024


def neo4j_env(settings: Neo4jSettings) -> dict[str, str]:
    env = {**os.environ, "MAGDI_NEO4J_URI": settings.neo4j_uri or "", "MAGDI_NEO4J_USER": settings.neo4j_user}
    if settings.neo4j_password:
        env["MAGDI_NEO4J_PASSWORD"] = settings.neo4j_password.get_secret_value()
    return env


# ---------------------------------------------------------------- the loaders, each in its own process


def load_child(kind: str, path: str, limit: int) -> None:
    """Child process: read up to `limit` MAGs with loader `kind`; prints {"mags", "seconds"}."""
    if kind == "neo4j-before":
        sys.modules["neo4j._rust"] = None  # type: ignore[assignment]  # the pure-Python bolt decoder
    # imported before the clock starts (the sources import lazily)
    from magdi.formats import jsonl  # noqa: F401
    from magdi.settings import get_settings
    from magdi.store import graph_store  # noqa: F401
    from trainer.sources import JsonlSource, Neo4jSource

    def before() -> Iterator[Debate]:
        """The read path as it was: Record.data() on each page (and no Rust extension, above)."""
        from magdi.store import records
        from magdi.store.connection import open_driver
        from magdi.store.graph_store import MAG_PROJECTION

        settings = get_settings()
        driver = open_driver(settings)
        after = None
        try:
            with driver.session() as session:
                while True:
                    query = ("MATCH (d:Debate)" + (" WHERE d.id > $after" if after else "")
                             + " WITH d ORDER BY d.id LIMIT 256 " + MAG_PROJECTION)
                    rows = [r.data() for r in session.run(query, after=after)]
                    for row in rows:
                        yield records.debate_from(row["d"], row["q"], row["rs"], row["es"])
                    if len(rows) < 256:
                        return
                    after = rows[-1]["d"]["id"]
        finally:
            driver.close()

    source: Iterator[Debate]
    if kind == "jsonl":
        source = JsonlSource(Path(path)).iter_debates()
    elif kind == "neo4j":
        source = Neo4jSource().iter_debates()
    else:
        source = before()
    n, t0 = 0, time.perf_counter()
    for _ in source:
        n += 1
        if n >= limit:
            break
    print(json.dumps({"mags": n, "seconds": time.perf_counter() - t0}))


# ---------------------------------------------------------------- the run


def measure_size(size: int, settings: Neo4jSettings, work: Path, ingest_s: float, requests: int,
                 loader_mags: int) -> SizeResult:
    from benchmarks.api import start_api, stop
    from magdi.store.connection import open_driver
    from magdi.store.graph_store import DebateFilter, GraphStore, encode_cursor, page_query

    result = SizeResult(size, ingest_s)
    env = neo4j_env(settings)
    export = work / f"export-{size}.jsonl"
    t0 = time.perf_counter()
    _, rss = child([sys.executable, "-m", "magdi.cli", "export", "--format", "jsonl", "--out", str(export)], env)
    result.export_mags_per_s = size / (time.perf_counter() - t0)
    result.export_peak_mib, result.export_bytes = rss, export.stat().st_size

    driver = open_driver(settings)
    store = GraphStore(driver)
    token = secrets.token_urlsafe(24)
    proc, base = start_api(settings, token)
    try:
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        cases = [("none", DebateFilter(), {}), (f"dataset={RARE_DATASET}", DebateFilter(dataset=RARE_DATASET),
                                                {"dataset": RARE_DATASET}),
                 ("job", DebateFilter(job_id=job_of(3)), {"job": job_of(3)})]
        for name, flt, query in cases:
            ids = store.debate_ids(flt)
            for depth, after in (("first", None), ("deep", ids[len(ids) // 2])):
                params = {**query, "limit": PAGE, **({"cursor": encode_cursor(after)} if after else {})}
                api_ms = p50_ms(lambda p=params: http.get("/v1/debates", params=p).raise_for_status(), requests)
                now_q, now_p = page_query(flt, after, PAGE + 1, "RETURN d {.*} AS d")
                where, fp = flt.where()
                clauses = ([where] if where else []) + (["d.id > $after"] if after else [])
                before_q = PAGE_BEFORE.format(where=f" WHERE {' AND '.join(clauses)}" if clauses else "")
                before_p = {**fp, "after": after, "limit": PAGE + 1}
                result.pages.append({
                    "filter": name, "page": depth, "matches": len(ids), "api_p50_ms": api_ms,
                    "query_p50_ms": p50_ms(lambda q=now_q, p=now_p: driver.execute_query(q, p), requests),
                    "before_p50_ms": p50_ms(lambda q=before_q, p=before_p: driver.execute_query(q, p), requests),
                    "db_hits": db_hits(driver, now_q, now_p), "before_db_hits": db_hits(driver, before_q, before_p),
                })
        http.close()
    finally:
        stop(proc)
        driver.close()

    limit = min(size, loader_mags)
    for kind in ("jsonl", "neo4j", "neo4j-before"):
        out, _ = child([sys.executable, "-m", "benchmarks.store_scale", "--load-child", kind, str(export),
                        str(limit)], env)
        result.loaders[kind] = out["mags"] / out["seconds"]
    export.unlink()
    return result


def grow(store: Any, start: int, stop_at: int, batch: int) -> float:
    """Write MAGs start..stop_at-1; seconds per MAG of the writes alone (building them is not timed)."""
    spent = 0.0
    for i in range(start, stop_at, batch):
        debates = [realistic(j) for j in range(i, min(i + batch, stop_at))]
        t0 = time.perf_counter()
        store.write_debates(debates)
        spent += time.perf_counter() - t0
    return spent / (stop_at - start)


def report(results: list[SizeResult]) -> None:
    print("\n| MAGs | ingest ms/MAG | export MAGs/s | export peak RSS MiB | export MB |")
    print("|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.size:,} | {r.ingest_s_per_mag * 1000:.1f} | {r.export_mags_per_s:,.0f} | "
              f"{r.export_peak_mib:.0f} | {r.export_bytes / 1e6:,.0f} |")
    print("\n| MAGs | filter | page | matches | API p50 ms | query p50 ms (before) | ratio | db hits (before) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        for p in r.pages:
            print(f"| {r.size:,} | {p['filter']} | {p['page']} | {p['matches']:,} | {p['api_p50_ms']:.1f} | "
                  f"{p['query_p50_ms']:.1f} ({p['before_p50_ms']:.1f}) | "
                  f"{p['before_p50_ms'] / p['query_p50_ms']:.1f}x | {p['db_hits']:,} ({p['before_db_hits']:,}) |")
    print("\n| MAGs | MAGs read | jsonl MAGs/s | Neo4j MAGs/s | Neo4j before MAGs/s | Neo4j now/before | jsonl/Neo4j |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ld = r.loaders
        print(f"| {r.size:,} | {min(r.size, ARGS.loader_mags):,} | {ld['jsonl']:,.0f} | {ld['neo4j']:,.0f} | "
              f"{ld['neo4j-before']:,.0f} | {ld['neo4j'] / ld['neo4j-before']:.2f}x | {ld['jsonl'] / ld['neo4j']:.2f}x |")


ARGS = argparse.Namespace(loader_mags=20000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="store sizes, ascending, comma-separated")
    parser.add_argument("--batch", type=int, default=200, help="MAGs per write transaction")
    parser.add_argument("--requests", type=int, default=30, help="requests per page case (p50)")
    parser.add_argument("--loader-mags", type=int, default=20000, help="MAGs each loader reads at most")
    parser.add_argument("--load-child", nargs=3, metavar=("KIND", "PATH", "LIMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_child(args.load_child[0], args.load_child[1], int(args.load_child[2]))
        return 0
    ARGS.loader_mags = args.loader_mags
    sizes = [int(s) for s in args.sizes.split(",")]
    from magdi.store.server import ManagedNeo4j

    with tempfile.TemporaryDirectory(prefix="magdi-scale-") as tmp:
        work = Path(tmp)
        if os.environ.get("MAGDI_NEO4J_URI"):
            return run(Neo4jSettings(), sizes, args, work)
        with ManagedNeo4j(work / "neo4j", auth=False) as info:
            return run(Neo4jSettings(neo4j_uri=info.uri), sizes, args, work)


def run(settings: Neo4jSettings, sizes: list[int], args: argparse.Namespace, work: Path) -> int:
    from magdi.store.connection import open_driver
    from magdi.store.graph_store import GraphStore

    driver = open_driver(settings)
    store = GraphStore(driver, query_timeout_s=600)
    with driver.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
    store.ensure_schema()
    results: list[SizeResult] = []
    have = 0
    try:
        for size in sizes:
            t0 = time.perf_counter()
            per_mag = grow(store, have, size, args.batch)
            have = size
            print(f"{size:,} MAGs stored ({per_mag * 1000:.1f} ms/MAG, {time.perf_counter() - t0:.0f} s)", flush=True)
            results.append(measure_size(size, settings, work, per_mag, args.requests, args.loader_mags))
            report(results[-1:])
            sys.stdout.flush()
    finally:
        driver.close()
    print("\n== all sizes ==")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
