"""Security checks not already in tests/api: secrets end-to-end, Community's missing RBAC, echoed inputs.

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

import json
import subprocess
from pathlib import Path

import neo4j
import pytest
from fastapi.testclient import TestClient
from generator_helpers import MAGDI, neo4j_subprocess_env, write_panel
from typer.testing import CliRunner

from magdi.settings import Neo4jSettings
from magdi.store.graph_store import GraphStore

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
