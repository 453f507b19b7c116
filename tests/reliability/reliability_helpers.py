"""Helpers for the reliability tests (imported by name: pyproject's pytest `pythonpath` lists this folder).

`final_state` is the one checker every fault row ends with: it reads the FINAL state of Neo4j
and the simulated panel's per-prompt counters and returns what was lost and what was duplicated.
`Recorder` appends each row of the fault matrix to `reliability-results.json` (in the folder
named by `MAGDI_RELIABILITY_OUT`), from which `scripts/reliability_report.py` writes the doc.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from magdi.mag import DebateStatus, ParseStatus
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GENERATOR_TESTS = REPO / "tests" / "generator"

RESULTS_FILE = "reliability-results.json"


@dataclass
class Row:
    """One line of the fault matrix."""

    fault: str
    injected: str
    happened: str
    nodes_lost: int
    nodes_duplicated: int
    recover_s: float | None
    nodes_changed: int | None = None  # stored nodes/relationships whose properties changed; None: not measured
    test: str = ""
    passed: bool = True
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Probe:
    """One line of the security table: an attack from the review (issue 16), how it was tried, what came of it."""

    finding: str
    probe: str
    result: str
    test: str = ""


class Recorder:
    """Rows of this session, rewritten to the JSON file after each one (a crash keeps the rest)."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / RESULTS_FILE
        self.rows: list[Row] = []
        self.probes: list[Probe] = []
        self._lock = threading.Lock()
        out_dir.mkdir(parents=True, exist_ok=True)
        self._write()

    def add(self, row: Row | Probe) -> None:
        with self._lock:
            (self.probes if isinstance(row, Probe) else self.rows).append(row)  # type: ignore[arg-type]
            self._write()

    def _write(self) -> None:
        self.path.write_text(json.dumps({"started": time.time(), "rows": [asdict(r) for r in self.rows],
                                         "security": [asdict(p) for p in self.probes]}, indent=1, default=str))


def graph_duplicates(driver: Any) -> dict[str, int]:
    """Duplicates anywhere in the graph: nodes by id, responses by slot, edges by (src, dst)."""
    queries = {
        "responses_by_id": "MATCH (r:Response) WITH r.id AS k, count(*) AS n WHERE n > 1 RETURN sum(n - 1) AS d",
        "responses_by_slot": "MATCH (r:Response) WITH r.debate_id AS a, r.agent AS b, r.round AS c, count(*) AS n "
                             "WHERE n > 1 RETURN sum(n - 1) AS d",
        "debates_by_id": "MATCH (x:Debate) WITH x.id AS k, count(*) AS n WHERE n > 1 RETURN sum(n - 1) AS d",
        "debates_by_question": "MATCH (x:Debate) WITH x.job_id AS j, x.question_id AS q, count(*) AS n "
                               "WHERE n > 1 RETURN sum(n - 1) AS d",
        "questions_by_id": "MATCH (x:Question) WITH x.id AS k, count(*) AS n WHERE n > 1 RETURN sum(n - 1) AS d",
        "agents_by_id": "MATCH (x:Agent) WITH x.id AS k, count(*) AS n WHERE n > 1 RETURN sum(n - 1) AS d",
        "jobs_by_id": "MATCH (x:Job) WITH x.id AS k, count(*) AS n WHERE n > 1 RETURN sum(n - 1) AS d",
        "informs_by_pair": "MATCH (s:Response)-[x:INFORMS]->(t:Response) WITH s, t, count(x) AS n WHERE n > 1 "
                           "RETURN sum(n - 1) AS d",
        "has_response_by_pair": "MATCH (s:Debate)-[x:HAS_RESPONSE]->(t:Response) WITH s, t, count(x) AS n "
                                "WHERE n > 1 RETURN sum(n - 1) AS d",
        "responses_in_two_debates": "MATCH (r:Response)<-[:HAS_RESPONSE]-(d:Debate) WITH r, count(d) AS n "
                                    "WHERE n > 1 RETURN sum(n - 1) AS d",
    }
    out = {}
    for name, query in queries.items():
        records, _, _ = driver.execute_query(query)
        out[name] = int(records[0]["d"] or 0)
    return out


def sim_counts(stats: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(p["model"], p["prompt_sha256"]): p["count"] for p in stats["by_prompt"]}


def expected_prompts(debate: Any, protocol: Any) -> set[tuple[str, str]]:
    """(model, prompt hash) of every first-try request the protocol makes for this stored debate."""
    from services.generator.client import prompt_hash

    models = {a.name: a.model for a in debate.panel}
    rounds = sorted({r.round for r in debate.responses})
    nxt = protocol.next_round(debate)
    if nxt is not None and nxt not in rounds:
        rounds.append(nxt)
    out = set()
    for rnd in rounds:
        before = debate.model_copy(update={"responses": [x for x in debate.responses if x.round < rnd], "edges": []})
        for req in protocol.turns(before, rnd):
            out.add((models[req.agent], prompt_hash(req.messages)))
    return out


def final_state(store: GraphStore, job_id: str, n_questions: int, stats: dict[str, Any] | None,
                *, repeat_ok: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The final state of a job's MAGs against the panel's counters.

    - `missing_debates`: questions without a finished MAG (complete, or failed: no agent gave a
      valid answer, every turn stored as invalid/absent with its error);
    - `lost_calls`: successful completions of a first-try prompt with no stored turn (valid or
      invalid) for it, i.e. a paid answer that is not in the graph;
    - `stored_twice`: stored turns whose prompt the panel completed more than once (the turn was
      requested again after being answered); `repeat_ok` exempts calls in flight at a SIGKILL;
    - `duplicates`: from `graph_duplicates`; job counters against the stored debates.
    """
    from services.generator.jobspec import prepare
    from services.generator.protocols import build_protocol

    ids = store.debate_ids(DebateFilter(job_id=job_id))
    debates = [store.get_debate(i) for i in ids]
    complete = [d for d in debates if d is not None and d.status is DebateStatus.COMPLETE]
    finished = [d for d in debates if d is not None and d.status in (DebateStatus.COMPLETE, DebateStatus.FAILED)]
    job = JobStore(store).get(job_id)
    assert job is not None, f"no job {job_id}"
    prepared = prepare(job.spec)
    protocol = build_protocol(prepared.protocol, {a.name: a.demos_key for a in prepared.panel.agents})
    stored_ok: dict[tuple[str, str], int] = {}
    statuses: dict[str, int] = {}
    for d in debates:
        for r in d.responses:
            statuses[r.parse_status.value] = statuses.get(r.parse_status.value, 0) + 1
            if r.parse_status is not ParseStatus.ABSENT:
                key = (r.model, r.prompt_hash)
                stored_ok[key] = stored_ok.get(key, 0) + 1
    lost_calls = stored_twice = reasks = 0
    if stats is not None:
        counts = sim_counts(stats)
        expected = set().union(*(expected_prompts(d, protocol) for d in debates)) if debates else set()
        for key, n in counts.items():
            if key in stored_ok:
                if n > 1 and key not in (repeat_ok or set()):
                    stored_twice += 1
            elif key in expected:
                lost_calls += 1
            else:
                reasks += 1  # a re-ask's prompt (first try + the reply + "please answer in JSON")
    responses = [r for d in debates for r in d.responses]
    counters_ok = (job.done == len(complete)
                   and job.failed == sum(1 for d in debates if d.status is DebateStatus.FAILED)
                   and job.tokens_in == sum(d.tokens_in or 0 for d in debates)
                   and job.tokens_out == sum(d.tokens_out or 0 for d in debates))
    dupes = graph_duplicates(store.driver)
    return {
        "debates": len(debates), "complete": len(complete), "failed": len(finished) - len(complete),
        "missing_debates": n_questions - len(finished),
        "questions": len({d.question.id for d in debates}), "responses": len(responses),
        "parse_status": statuses, "lost_calls": lost_calls, "stored_twice": stored_twice, "reasks": reasks,
        "duplicates": dupes, "duplicated": sum(dupes.values()),
        "job_status": job.status.value, "job_done": job.done, "job_failed": job.failed, "job_total": job.total,
        "job_errors": job.errors, "counters_ok": counters_ok, "lease_owner": job.lease_owner,
    }


def assert_clean(state: dict[str, Any], n_questions: int) -> None:
    """Exactly one finished MAG per question, nothing lost, nothing duplicated, counters right."""
    assert state["debates"] == state["questions"] == n_questions, state
    assert state["missing_debates"] == 0, state
    assert state["lost_calls"] == 0, f"answered calls missing from the graph: {state}"
    assert state["stored_twice"] == 0, f"stored turns requested again: {state}"
    assert state["duplicated"] == 0, state["duplicates"]
    assert state["counters_ok"] and state["job_total"] == n_questions, state
    assert state["job_done"] + state["job_failed"] == n_questions, state
    assert state["job_status"] == "complete" and state["lease_owner"] is None, state


def lost_and_duplicated(state: dict[str, Any]) -> tuple[int, int]:
    return state["missing_debates"] + state["lost_calls"], state["duplicated"] + state["stored_twice"]


class Listener:
    """A real HTTP server on 127.0.0.1 that records every request and answers like an OpenAI endpoint.

    It stands for an attacker's host: if the code under test sends it anything (a key in a header, a
    prompt in a body), it is in `requests`. It answers `/models` and chat completions properly, so a
    request that does get through is not stopped by an error either (the positive controls use it).
    """

    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.requests: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def text(self) -> str:
        """Everything received, headers and bodies, as one string to search."""
        return json.dumps(self.requests)

    def __enter__(self) -> Listener:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                listener.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                          "body": body.decode("utf-8", "replace")})
                return body

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._record()
                self._send({"object": "list", "data": [{"id": m, "object": "model"} for m in listener.models]})

            def do_POST(self) -> None:  # noqa: N802
                self._record()
                content = json.dumps({"reasoning": "listener", "answer": "1", "confidence_level": "0.9"})
                self._send({"id": "x", "object": "chat.completion", "created": 0, "model": listener.models[0],
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def graph_snapshot(driver: Any) -> dict[str, str]:
    """Every node and relationship (but the schema version) with its labels/type and properties, by element id."""
    nodes, _, _ = driver.execute_query("MATCH (n) WHERE NOT n:SchemaVersion "
                                       "RETURN elementId(n) AS k, labels(n) AS l, properties(n) AS p")
    rels, _, _ = driver.execute_query("MATCH (a)-[r]->(b) RETURN elementId(r) AS k, elementId(a) AS a, type(r) AS t, "
                                      "properties(r) AS p, elementId(b) AS b")
    out = {r["k"]: repr((sorted(r["l"]), sorted(r["p"].items()))) for r in nodes}
    out.update({r["k"]: repr((r["a"], r["t"], sorted(r["p"].items()), r["b"])) for r in rels})
    return out


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """lost: gone since `before`; changed: still there with other labels/properties; added: new."""
    return {"lost": sum(1 for k in before if k not in after),
            "changed": sum(1 for k, v in before.items() if k in after and after[k] != v),
            "added": sum(1 for k in after if k not in before)}


def env_out_dir() -> Path | None:
    value = os.environ.get("MAGDI_RELIABILITY_OUT")
    return Path(value) if value else None



def startup_worker(uri: str, user: str, password: str | None, rounds: int, barrier: Any, results: Any) -> None:
    """A process of the concurrent start-up row: `schema.apply` at the barrier, `rounds` times.

    Runs in a spawned child; each outcome (the version, or the error's name and text) goes to `results`.
    """
    from magdi.settings import Neo4jSettings
    from magdi.store import schema
    from magdi.store.connection import open_driver

    driver = open_driver(Neo4jSettings(neo4j_uri=uri, neo4j_user=user, neo4j_password=password))
    try:
        for rnd in range(rounds):
            barrier.wait(timeout=300)  # released together with the other processes
            try:
                results.put((rnd, schema.apply(driver), None))
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                results.put((rnd, None, f"{type(exc).__name__}: {exc}"))
            barrier.wait(timeout=300)  # the parent checks and resets the database
    finally:
        driver.close()
