"""Security checks not already in tests/api: the review's probes (issue 16), secrets end-to-end,
Community's missing RBAC, echoed inputs.

The probes reproduce each finding of the security review against a REAL local listener (an HTTP
server in the test standing for an attacker's host, `reliability_helpers.Listener`) and the real
API, worker and Neo4j, and record one line each for the security table of docs/reliability.md:
no secret and no prompt arrives at the listener, neither through the API nor through a job spec
written into Neo4j directly; SSRF targets and data paths outside the data root (symlinks included)
are refused with generic errors; health checks answer under a Cypher flood; one query cannot take
Neo4j's heap; anonymous readers, foreign Host headers, insecure-dev binds and weak tokens. Positive
controls (the same run against an allow-listed endpoint) show the listener does see what is sent.

`tests/api/test_auth.py` covers the token rules on every endpoint (missing, wrong, Basic, query
string, open reads, no token configured, weak tokens, tokens in logs), `test_reliability_ops.py` and
`test_imports.py` the JSON and import size limits (chunked bodies included) and `test_cypher.py`
the read-only Cypher guards (50 escape attempts). Added here:

- a REAL job run with an API key (`api_key_env`) whose value must never appear in the generator's
  logs (debug level, subprocess stdout/stderr), the graph (every property of every node and
  relationship), any export format, a backup, `magdi jobs status` or the API's job view;
- Neo4j Community has no role-based access control, so the API cannot use a read-only database
  user as a further guard (asserted, so the doc's claim stays true);
- the API must not echo a secret it refuses (422 bodies name the field, never the input).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest
from fastapi.testclient import TestClient
from generator_helpers import MAGDI, neo4j_subprocess_env, write_panel
from reliability_helpers import Listener, Probe
from typer.testing import CliRunner

from magdi.mag import Agent, JobSpec
from magdi.policy import Endpoint, OperatorPolicy
from magdi.settings import Neo4jSettings
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore

SECRET = "sk-magdi-test-SECRET-123"
TOKEN = "reliability-token-0123456789"
runner = CliRunner()


def test_an_api_key_never_leaves_the_process(store: GraphStore, neo4j_env, neo4j_server: Neo4jSettings,  # noqa: ANN001
                                             start_panel, gsm8k: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    from magdi.cli import app
    from services.api.main import create_app
    from services.api.settings import ApiSettings

    sim = start_panel(latency_s=0.01, error_rate=0.3, malformed_rate=0.1, down_models=["6b_verification"])
    panel = write_panel(tmp_path / "panel.yaml", sim.base_url, api_key_env="RELIABILITY_TEST_KEY",
                        breaker={"failure_threshold": 3, "cooldown_s": 0.2, "max_cooldown_s": 0.4, "down_after_s": 1.0})
    env = neo4j_subprocess_env(RELIABILITY_TEST_KEY=SECRET)
    run = subprocess.run([MAGDI, "-v", "generate", "--panel", str(panel), "--dataset", "gsm8k", "--data",
                          str(gsm8k["test"]), "--limit", "3", "--offset", "850", "--job", "secret",
                          "--max-rounds", "1", "--no-progress"], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "DEBUG" in run.stderr, "debug logging was on"
    assert "503" in run.stderr or "down" in run.stdout, "errors were logged and reported"
    places = {"generate stdout": run.stdout, "generate stderr": run.stderr}

    nodes, _, _ = store.driver.execute_query("MATCH (n) RETURN labels(n) AS l, properties(n) AS p")
    rels, _, _ = store.driver.execute_query("MATCH ()-[r]->() RETURN type(r) AS t, properties(r) AS p")
    places["graph"] = json.dumps([r.data() for r in [*nodes, *rels]], default=str)
    assert "RELIABILITY_TEST_KEY" in places["graph"], "the variable's NAME is stored (in the job spec)"
    for fmt in ("jsonl", "magdi-ref", "sft", "dpo"):
        out = tmp_path / f"export.{fmt}"
        done = runner.invoke(app, ["export", "--format", fmt, "--out", str(out)])
        assert done.exit_code == 0, done.output
        places[f"export {fmt}"] = out.read_text()
    backup = tmp_path / "backup.jsonl"
    assert runner.invoke(app, ["db", "backup", "--out", str(backup)]).exit_code == 0
    places["backup"] = backup.read_text()
    status = runner.invoke(app, ["jobs", "status", "secret", "--format", "json"])
    places["jobs status"] = status.output
    assert json.loads(status.output)["errors"], "the job recorded endpoint errors"
    with TestClient(create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server)), base_url="http://localhost") as client:
        view = client.get("/v1/jobs/job-secret", headers={"Authorization": f"Bearer {TOKEN}"})
        assert view.status_code == 200
        places["API job view"] = view.text
    leaked = [where for where, text in places.items() if SECRET in text or SECRET[3:] in text]
    assert not leaked, f"the API key leaked into: {leaked}"


def test_community_edition_has_no_rbac_for_a_read_only_user(driver: neo4j.Driver) -> None:
    """Documented in docs/reliability.md: read-only Cypher is enforced by magdi, not by a DB role."""
    edition, _, _ = driver.execute_query("CALL dbms.components() YIELD edition RETURN edition")
    if edition[0]["edition"] != "community":
        pytest.skip("an Enterprise server: roles exist, use a reader user for the API")
    with pytest.raises(neo4j.exceptions.Neo4jError) as err:
        driver.execute_query("CREATE ROLE magdi_reader IF NOT EXISTS", database_="system")
    assert "enterprise" in str(err.value).lower() or "unsupported" in str(err.value).lower(), err.value


def test_a_refused_inline_key_is_not_echoed(store: GraphStore, neo4j_server: Neo4jSettings) -> None:  # noqa: ARG001
    from services.api.main import create_app
    from services.api.settings import ApiSettings

    panel = {"agents": [{"name": "a", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key": SECRET}]}
    with TestClient(create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server)), base_url="http://localhost") as client:
        r = client.post("/v1/jobs", json={"name": "j", "dataset": "gsm8k", "data_path": "x.jsonl", "panel": panel},
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422
    assert SECRET not in r.text


# -- the review's probes (issue 16) ----------------------------------------------------------------
OPENAI_SECRET = "sk-openai-PROBE-5f1e0c9a7b3d"
API_TOKEN_IN_ENV = "api-token-PROBE-8c2d4e6f0a1b3c5d"
PRIVATE_MARKER = "PRIVATE-ROW-7f3a"


def worker_policy(listener: Listener | None = None, *, allow: bool = True, **kw: Any) -> OperatorPolicy:
    """The operator's configuration: OpenAI declared; the listener declared (keyless) only when given."""
    endpoints = [Endpoint(name="openai", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY",
                          models=["gpt-4o-mini"])]
    if listener is not None:
        endpoints.append(Endpoint(name="local", base_url=listener.base_url, models=listener.models, timeout_s=5))
    return OperatorPolicy(endpoints=endpoints, egress_allow=["127.0.0.1"] if allow else [], **kw)


@dataclass
class Outcome:
    status: str
    errors: list[str]


def run_worker(store: GraphStore, policy: OperatorPolicy) -> dict[str, Outcome]:
    """A generator worker (in process) until the queue is empty; each job's status and errors as it left them
    (read with Cypher: a forged spec is one the schema refuses to load)."""
    from services.generator.settings import GeneratorSettings
    from services.generator.worker import Worker

    settings = GeneratorSettings(once=True, lease_s=15, preflight_timeout_s=3, concurrency=2, policy=policy)
    asyncio.run(Worker(store, settings).run())
    rows, _, _ = store.driver.execute_query("MATCH (j:Job) RETURN j.name AS name, j.status AS status, "
                                            "j.errors AS errors")
    return {r["name"]: Outcome(r["status"], list(r["errors"] or [])) for r in rows}


def forge(store: GraphStore, name: str, spec: dict[str, Any]) -> None:
    """A queued job written straight into Neo4j (not through the API, not through the schema)."""
    store.driver.execute_query(
        "CREATE (:Job {id: $id, name: $name, dataset: 'gsm8k', spec_json: $spec, config_hash: 'forged', "
        "status: 'queued', total: 0, done: 0, failed: 0, tokens_in: 0, tokens_out: 0, cost_usd: 0.0, errors: [], "
        "created_at: datetime(), updated_at: datetime()})",
        id=f"job-{name}", name=name, spec=json.dumps({"name": name, "dataset": "gsm8k", **spec}))


def api_client(neo4j_server: Neo4jSettings, policy: OperatorPolicy, **kw: Any) -> TestClient:
    from services.api.main import create_app
    from services.api.settings import ApiSettings

    return TestClient(create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server, policy=policy, **kw)),
                      base_url="http://localhost")


AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION = [{"dataset": "gsm8k", "qid": "p1", "text": "What is 6 * 7?", "task": "number", "gold_answer": "42"}]


def test_finding_1_no_secret_and_no_prompt_reaches_a_callers_listener(store: GraphStore, neo4j_env,  # noqa: ANN001
                                                                      neo4j_server: Neo4jSettings, monkeypatch,  # noqa: ANN001
                                                                      record) -> None:  # noqa: ANN001
    """The review's exploit: three seats at a listener with the worker's secrets as key variables."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("MAGDI_API_TOKEN", API_TOKEN_IN_ENV)
    neo4j_password = os.environ["MAGDI_NEO4J_PASSWORD"]
    with Listener(["gpt-4o-mini"]) as evil:
        seats = [{"name": f"a{i}", "model": "gpt-4o-mini", "base_url": evil.base_url, "api_key_env": var}
                 for i, var in enumerate(["MAGDI_NEO4J_PASSWORD", "OPENAI_API_KEY", "MAGDI_API_TOKEN"])]
        with api_client(neo4j_server, worker_policy()) as client:
            debate = client.post("/v1/debates", json={"question": {"text": "What is 6 * 7?"}, "panel": {"agents": seats}},
                                 headers=AUTH)
            job = client.post("/v1/jobs", json={"name": "j", "dataset": "gsm8k", "data_path": "gsm8k/test.jsonl",
                                                "panel": {"agents": seats[1:2]}}, headers=AUTH)
            raised = [client.post("/v1/debates", json={"question": {"text": "1+1?"}, "panel": {"agents": [
                {"name": "a", "endpoint": "openai", "model": "gpt-4o-mini", **extra}]}}, headers=AUTH)
                for extra in ({"max_tokens": 100000}, {"limit": 100000})]
        assert (debate.status_code, job.status_code, *(r.status_code for r in raised)) == (422,) * 4
        refused = {tuple(e["loc"][-1:]) for e in debate.json()["detail"] + job.json()["detail"]}
        assert {("api_key_env",), ("base_url",)} <= refused, refused
        assert [[e["loc"][-1] for e in r.json()["detail"]] for r in raised] == [["max_tokens"], ["limit"]]
        assert JobStore(store).list() == [], "nothing was queued"
        # the same seats in a spec that reached Neo4j some other way: the worker checks again
        forge(store, "forged-magdi-keys", {"questions": QUESTION, "panel": {"agents": seats}})
        forge(store, "forged-openai-key", {"questions": QUESTION, "panel": {"agents": seats[1:2]}})
        jobs = run_worker(store, worker_policy())
    assert evil.requests == [], evil.text()[:2000]
    assert {n: j.status for n, j in jobs.items()} == {"forged-magdi-keys": "failed", "forged-openai-key": "failed"}
    assert "MAGDI_" in jobs["forged-magdi-keys"].errors[0] and "not an endpoint declared" in \
        jobs["forged-openai-key"].errors[0], jobs
    everything = json.dumps([asdict(j) for j in jobs.values()])
    assert not [s for s in (OPENAI_SECRET, API_TOKEN_IN_ENV, neo4j_password) if s in everything]
    record(Probe(
        finding="1. secret exfiltration (high)",
        probe="POST /v1/debates and /v1/jobs with seats at a listener (base_url) and api_key_env MAGDI_NEO4J_PASSWORD, "
              "OPENAI_API_KEY, MAGDI_API_TOKEN, plus max_tokens over the cap and an extra `limit` field; the same seats "
              "written into Neo4j directly and a worker run with those secrets in its environment",
        result=f"422 naming {', '.join(sorted('.'.join(r) for r in refused))} (then max_tokens, limit); nothing queued; "
               "the worker marked both forged jobs failed (schema refuses MAGDI_* keys; the OpenAI seat is not an "
               f"endpoint it declared); listener received {len(evil.requests)} requests, no secret, no prompt"))


def test_finding_2_ssrf_targets_are_refused_and_errors_say_nothing_about_them(  # noqa: ANN201
        store: GraphStore, neo4j_server: Neo4jSettings, record):  # noqa: ANN001
    with Listener(["m1", "m2"]) as evil:
        targets = ["http://169.254.169.254/latest/meta-data", evil.base_url, "http://10.0.0.1:8000/v1",
                   "http://localhost:7687/v1"]
        with api_client(neo4j_server, worker_policy(evil)) as client:
            codes = [client.post("/v1/debates", json={"question": {"text": "q?"}, "panel": {"agents": [
                {"name": "a", "model": "m1", "base_url": url}]}}, headers=AUTH).status_code for url in targets]
        assert codes == [422] * len(targets)
        for i, url in enumerate(targets):  # keyless seats written into Neo4j: refused, not probed
            JobStore(store).create(JobSpec(name=f"ssrf-{i}", dataset="gsm8k", questions=QUESTION,
                                           panel={"agents": [{"name": "a", "model": "m1", "base_url": url}]}))
        refused = run_worker(store, worker_policy(evil, allow=False))
        # the listener IS declared, but on loopback, which this operator did not allow-list: egress refuses it
        JobStore(store).create(JobSpec(name="declared-not-allowed", dataset="gsm8k", questions=QUESTION,
                                       panel={"agents": [{"name": "a", "endpoint": "local", "model": "m1"}]}))
        refused |= run_worker(store, worker_policy(evil, allow=False))
        assert evil.requests == [], evil.text()[:2000]
        # positive control: the same declared endpoint, allow-listed, is reached (the listener sees requests)
        JobStore(store).create(JobSpec(name="control", dataset="gsm8k", questions=QUESTION,
                                       panel={"agents": [{"name": "a", "endpoint": "local", "model": "m1"}]},
                                       protocol={"max_rounds": 0}))
        control = run_worker(store, worker_policy(evil))["control"]
        reached = len(evil.requests)
    assert control.status == "complete" and reached >= 2, (control, reached)
    assert all(j.status == "failed" for j in refused.values()), refused
    errors = " ".join(e for j in refused.values() for e in j.errors)
    leaks = [w for w in ("unreachable", "model list", "HTTP 404", "m1", "m2", "lists") if w in errors]
    assert not leaks, errors
    assert "egress refused" in refused["declared-not-allowed"].errors[0]
    record(Probe(
        finding="2. SSRF with readable results (medium)",
        probe="seats at 169.254.169.254, the listener's loopback port, 10.0.0.1 and localhost:7687 through POST "
              "/v1/debates and written into Neo4j; the listener declared by the operator but not allow-listed",
        result=f"API {'/'.join(map(str, sorted(set(codes))))} for all {len(targets)}; the worker failed the {len(refused)} jobs before any "
               "request ('not an endpoint declared', 'egress refused ... loopback'); job errors hold no probe result "
               f"(no reachability, status or model ids); listener received 0 requests (control: allow-listed, "
               f"{reached} requests)"))


def test_finding_3_data_files_only_under_the_root_realpath_and_generic_errors(  # noqa: ANN201
        store: GraphStore, neo4j_server: Neo4jSettings, tmp_path: Path, record):  # noqa: ANN001
    root, private = tmp_path / "data", tmp_path / "private"
    root.mkdir()
    private.mkdir()
    row = {"question": f"{PRIVATE_MARKER}: what is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}
    (private / "rows.jsonl").write_text(json.dumps(row) + "\n")
    (root / "link.jsonl").symlink_to(private / "rows.jsonl")
    (root / "public.jsonl").write_text(json.dumps({**row, "question": "PUBLIC: what is 2 + 3?"}) + "\n")
    paths = [str(private / "rows.jsonl"), "link.jsonl", "/etc/shadow", "/etc/no-such-file", "/", "missing.jsonl",
             "../private/rows.jsonl"]  # the last: refused by the schema ('..' segments) before the root is looked at
    with Listener(["m1"]) as evil:
        policy = worker_policy(evil, data_root=root)
        with api_client(neo4j_server, policy) as client:
            answers = [client.post("/v1/jobs", json={"name": "j", "dataset": "gsm8k", "data_path": path, "panel": {
                "agents": [{"name": "a", "endpoint": "local", "model": "m1"}]}}, headers=AUTH) for path in paths]
        assert [(a.status_code, a.json()["detail"][0]["loc"]) for a in answers] == [(422, ["body", "data_path"])] * len(paths)
        messages = {a.json()["detail"][0]["msg"] for a in answers[:-1]}
        assert len(messages) == 1, messages
        seat = {"agents": [{"name": "a", "endpoint": "local", "model": "m1"}]}
        for i, path in enumerate([str(private / "rows.jsonl"), str(root / "link.jsonl"), "/"]):
            JobStore(store).create(JobSpec(name=f"file-{i}", dataset="gsm8k", data_path=path, data_format="gsm8k",
                                           panel=seat, protocol={"max_rounds": 0}))
        refused = run_worker(store, policy)
        assert PRIVATE_MARKER not in evil.text() and not [r for r in evil.requests if r["method"] == "POST"]
        JobStore(store).create(JobSpec(name="control", dataset="gsm8k", data_path="public.jsonl",
                                       data_format="gsm8k", panel=seat, protocol={"max_rounds": 0}))
        control = run_worker(store, policy)["control"]
        assert "PUBLIC: what is 2 + 3?" in evil.text(), "control: a file under the root does reach the endpoint"
    assert all(refused[f"file-{i}"].status == "failed" for i in range(3)) and control.status == "complete"
    errors = {e for i in range(3) for e in refused[f"file-{i}"].errors}
    assert len(errors) == 1 and "private" not in next(iter(errors)), errors
    record(Probe(
        finding="3. file read through data_path (medium)",
        probe=f"POST /v1/jobs with {len(paths)} paths (absolute outside the root, a symlink inside the root to a "
              "private gsm8k-shaped file, '..', /etc/shadow, a missing file, '/', a missing name under the root); "
              "the same paths written into Neo4j, the endpoint an allow-listed listener",
        result=f"422 for all, one message for every refusal ({next(iter(messages))!r}); the worker failed the "
               f"forged jobs with one generic error; the private row never reached the listener (control: a file "
               "under the root did)"))


def test_finding_4_health_answers_under_a_cypher_flood(store: GraphStore, neo4j_server: Neo4jSettings,  # noqa: ANN001, ARG001
                                                       record) -> None:  # noqa: ANN001
    from api_helpers import serve

    from services.api.main import create_app
    from services.api.settings import ApiSettings

    slow = "UNWIND range(1, 2000000000) AS x WITH x WHERE x < 0 RETURN count(*) AS n"  # runs into its timeout
    settings = ApiSettings(token=TOKEN, neo4j=neo4j_server, cypher_timeout_s=3.0, cypher_max_concurrent=4)
    codes: list[int] = []
    with serve(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as http:
        threads = [threading.Thread(target=lambda: codes.append(
            http.post("/v1/cypher", json={"query": slow}, headers=AUTH).status_code)) for _ in range(42)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the admitted queries are running now
        t0 = time.monotonic()
        health = http.get("/healthz")
        health_s = time.monotonic() - t0
        ready = http.get("/readyz")
        for t in threads:
            t.join(timeout=60)
    assert health.status_code == 200 and ready.status_code == 200
    # starved, it would wait for a Cypher slot (the 3 s timeout); the margin is for a loaded 2-core CI
    assert health_s < 2.0, f"/healthz took {health_s:.2f} s while Cypher queries ran"
    assert codes.count(429) >= 42 - 4 * 3 and set(codes) <= {400, 429}, codes  # 400: the 3 s timeout
    record(Probe(
        finding="4. health checks starve (medium)",
        probe="42 concurrent Cypher queries that run into a 3 s timeout (cap 4 at once), /healthz and /readyz meanwhile",
        result=f"/healthz 200 in {health_s * 1000:.0f} ms, /readyz 200; {codes.count(429)} queries refused at once "
               f"with 429 + Retry-After, {codes.count(400)} ran into the timeout (400)"))


def test_finding_5_one_query_cannot_take_neo4js_heap(store: GraphStore, neo4j_server: Neo4jSettings,  # noqa: ANN001, ARG001
                                                     record) -> None:  # noqa: ANN001
    with api_client(neo4j_server, worker_policy()) as client:
        t0 = time.monotonic()
        r = client.post("/v1/cypher", json={"query": "UNWIND range(1, 60000000) AS x RETURN size(collect(x)) AS n"},
                        headers=AUTH)
        took = time.monotonic() - t0
        after = client.post("/v1/cypher", json={"query": "RETURN 1 AS one"}, headers=AUTH)
    assert r.status_code == 400 and "db.memory.transaction.max" in r.json()["detail"], r.text
    assert after.json()["rows"] == [[1]], "Neo4j is still up"
    record(Probe(
        finding="5. no transaction memory cap (medium)",
        probe="POST /v1/cypher collecting 6*10^7 integers (~1 GB) on the managed Neo4j (1 GB heap, "
              "db.memory.transaction.max=512m; compose sets it too)",
        result=f"400 in {took:.1f} s: 'needs more memory than the server allows one transaction'; the server "
               "answers the next query"))


def test_finding_6_anonymous_readers_hosts_dev_mode_tokens_and_store_files(  # noqa: ANN201, C901
        store: GraphStore, neo4j_server: Neo4jSettings, neo4j_env, monkeypatch, make_debate, record):  # noqa: ANN001
    from magdi.cli import app
    from services.api.deps import get_settings
    from services.api.settings import ApiSettings

    inline = {"agents": [{"name": "a", "model": "m", "base_url": "https://llm.internal.example/v1",
                          "api_key_env": "OPENAI_API_KEY"}]}
    spec = JobSpec(name="cli", dataset="gsm8k", data_path="/srv/private/gsm8k.jsonl", panel=inline)
    JobStore(store).create(spec)
    JobStore(store).update(spec.id, errors=["https://llm.internal.example/v1/models: unreachable (ConnectError)"])
    debate = make_debate(1).model_copy(update={"panel": [Agent(name=n, model=f"{n}-model",
                                                               endpoint="https://llm.internal.example/v1")
                                                         for n in ("alice", "bob", "carol")]})
    store.write_debate(debate)
    hidden = ("llm.internal.example", "OPENAI_API_KEY", "/srv/private", "ConnectError")
    with api_client(neo4j_server, worker_policy(), open_reads=True) as client:
        shown = {path: [h for h in hidden if h in client.get(path).text]
                 for path in ("/v1/jobs", f"/v1/jobs/{spec.id}", f"/v1/debates/{debate.id}")}
        with_token = client.get(f"/v1/jobs/{spec.id}", headers=AUTH).text
        rebound = client.get("/v1/debates", headers={**AUTH, "Host": "attacker.example"}).status_code
    assert not any(shown.values()) and "llm.internal.example" in with_token, shown
    assert rebound == 400

    monkeypatch.setenv("MAGDI_API_INSECURE_DEV", "true")
    get_settings.cache_clear()
    try:
        served = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert served.exit_code == 2 and "non-loopback" in served.output, served.output

    weak = ["changemechangeme", "a" * 16, "abcd" * 4]
    refused_tokens = []
    for token in weak:
        with pytest.raises(ValueError, match="MAGDI_API_TOKEN"):
            ApiSettings(token=token)
        refused_tokens.append(token)

    homes = [c.parent for c in neo4j_server.home.glob("*/credentials.json")
             if json.loads(c.read_text()).get("uri") == neo4j_server.neo4j_uri]
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for h in homes for p in (h, h / "data")}
    if not os.environ.get("MAGDI_TEST_NEO4J_URI"):  # the managed server this session started
        assert homes and set(modes.values()) == {"0o700"}, modes
    record(Probe(
        finding="6. low: anonymous reads, Host header, insecure dev, weak tokens, store files",
        probe="anonymous GET /v1/jobs, /v1/jobs/{id}, /v1/debates/{id} with open reads; Host: attacker.example; "
              "`magdi serve --host 0.0.0.0` with MAGDI_API_INSECURE_DEV and no token; tokens "
              + ", ".join(f"`{t}`" for t in weak) + "; modes of the managed Neo4j's home and data folders",
        result="base URLs, key variable names, data paths and error texts redacted for anonymous readers (shown "
               "with the token); foreign Host 400; insecure dev on 0.0.0.0 exits 2; all three tokens refused at "
               f"startup; folders {', '.join(sorted(set(modes.values())))}"))
