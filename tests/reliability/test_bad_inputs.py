"""The bad-input corpus (`tests/bad_inputs/`): every file refused with its message, nothing stored.

Each folder holds the files and a `cases.yaml` pairing each with the command (or HTTP request),
the expected exit code (or status) and a substring of the expected message. CLI cases run the
real `magdi` app in-process (typer's CliRunner) against the session's Neo4j; API cases run the
real app under TestClient. The database is seeded with one MAG first, and must be byte-for-byte
the same afterwards (every node and relationship with its properties).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from repo_data import data_file
from typer.testing import CliRunner

from magdi.settings import Neo4jSettings
from magdi.store.graph_store import GraphStore

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
TOKEN = "reliability-token-0123456789"
runner = CliRunner()


def cases(folder: str) -> list[Any]:
    items = yaml.safe_load((CORPUS / folder / "cases.yaml").read_text())
    return [pytest.param(folder, c, id=f"{folder}/{c['file']}") for c in items]


def snapshot(store: GraphStore) -> list[str]:
    nodes, _, _ = store.driver.execute_query("MATCH (n) RETURN labels(n) AS l, properties(n) AS p")
    rels, _, _ = store.driver.execute_query("MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS t, properties(r) AS p, "
                                            "b.id AS b")
    return sorted([repr((r["l"], sorted(r["p"].items()))) for r in nodes]
                  + [repr((r["a"], r["t"], sorted(r["p"].items()), r["b"])) for r in rels])


@pytest.fixture
def seeded(store: GraphStore, make_debate) -> GraphStore:  # noqa: ANN001
    store.write_debate(make_debate(1))
    return store


def test_every_file_has_a_case() -> None:
    for folder in ("imports", "panels", "datasets", "trainer", "api"):
        listed = {c["file"] for c in yaml.safe_load((CORPUS / folder / "cases.yaml").read_text())}
        present = {p.name for p in (CORPUS / folder).iterdir() if p.name != "cases.yaml" and not p.name.startswith("_")}
        assert listed == present, f"{folder}: files without a case or cases without a file"


@pytest.mark.parametrize(("folder", "case"), cases("imports") + cases("panels") + cases("datasets") + cases("trainer"))
def test_cli_refuses_bad_input(folder: str, case: dict[str, Any], seeded: GraphStore, neo4j_env) -> None:  # noqa: ANN001
    from magdi.cli import app

    if folder == "trainer":
        pytest.importorskip("torch")
    gsm8k = data_file("gsm8k", "test.jsonl")
    subst = {"FILE": str(CORPUS / folder / case["file"]), "GSM8K": str(gsm8k),
             "PANEL": str(CORPUS / "datasets" / "_good_panel.yaml")}
    before = snapshot(seeded)
    result = runner.invoke(app, [subst.get(a, a) for a in case["args"]])
    message = " ".join(result.output.split())
    assert result.exit_code == case["exit"], result.output
    assert case["message"] in message, message
    assert "Traceback" not in result.output
    assert snapshot(seeded) == before, "nothing is stored for bad input"


@pytest.mark.parametrize(("folder", "case"), cases("api"))
def test_api_refuses_bad_input(folder: str, case: dict[str, Any], seeded: GraphStore,
                               neo4j_server: Neo4jSettings) -> None:
    from services.api.main import create_app
    from services.api.settings import ApiSettings

    request = json.loads((CORPUS / folder / case["file"]).read_text())
    body = {k: request[k] for k in ("json", "content") if k in request}
    before = snapshot(seeded)
    with TestClient(create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server)), base_url="http://localhost") as client:
        r = client.request(request["method"], request["path"], headers={"Authorization": f"Bearer {TOKEN}"}, **body)
    assert (r.status_code, case["message"] in r.text) == (case["status"], True), f"{r.status_code} {r.text[:500]}"
    assert snapshot(seeded) == before, "nothing is stored for a bad request"
