"""Health, readiness, metrics, request ids, JSON logs, CORS, body limits, OpenAPI, Neo4j outages."""

from __future__ import annotations

import json
import logging

from api_helpers import AUTH, TEST_HOSTS
from fastapi.testclient import TestClient

from magdi.settings import Neo4jSettings
from services.api.main import create_app
from services.api.observability import JsonFormatter, request_id_var
from services.api.settings import ApiSettings


def test_health_ready_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"
    schema = client.get("/openapi.json").json()
    assert {"/v1/debates", "/v1/debates/{debate_id}", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/cypher",
            "/v1/exports/{fmt}", "/v1/imports", "/v1/stats"} <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200
    assert client.get("/nope").status_code == 404


def test_neo4j_down_is_503_not_500():
    settings = ApiSettings(token=AUTH["Authorization"].split()[1], allowed_hosts=TEST_HOSTS,
                           neo4j=Neo4jSettings(neo4j_uri="bolt://127.0.0.1:9", neo4j_password="x",
                                               connect_timeout_s=0.2, query_timeout_s=0.2))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        down = client.get("/v1/debates", headers=AUTH)
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert client.post("/v1/cypher", json={"query": "RETURN 1"}, headers=AUTH).status_code == 503


def test_metrics_count_requests_by_route_template(client, store, make_debate):
    d = make_debate(1)
    store.write_debate(d)
    for _ in range(3):
        client.get(f"/v1/debates/{d.id}", headers=AUTH)
    client.get("/v1/debates/d-missing", headers=AUTH)
    text = client.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("magdi_api_requests_total{")
                and 'route="/v1/debates/{debate_id}"' in x and 'status="200"' in x)
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert 'route="/v1/debates/{debate_id}",status="404"' in text
    assert "magdi_api_request_duration_seconds_bucket" in text
    assert d.id not in text  # ids never become labels


def test_request_id_in_and_out(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    fresh = client.get("/healthz")
    assert len(fresh.headers["x-request-id"]) == 32
    for bad in ("y" * 300, "a b", "x\u00e9".encode("latin-1")):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert len(echoed) == 32 and echoed.isalnum()  # replaced, never echoed into headers and logs


def test_json_log_lines_carry_the_request_id():
    token = request_id_var.set("rid-42")
    try:
        record = logging.LogRecord("services.api.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
        record.status = 200
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "rid-42" and line["msg"] == "GET /x" and line["status"] == 200


def test_cors_is_off_by_default_and_explicit_when_on(client, make_client):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = client.options("/v1/cypher", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    cors = make_client(cors_origins="https://ui.example, https://other.example")
    ok = cors.options("/v1/cypher", headers={**preflight, "Origin": "https://ui.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ui.example"
    bad = cors.options("/v1/cypher", headers=preflight)
    assert "access-control-allow-origin" not in bad.headers


def test_json_bodies_have_a_size_limit(make_client, store):  # noqa: ARG001 - store wipes
    client = make_client(max_json_bytes=2048)
    r = client.post("/v1/cypher", json={"query": "RETURN 1", "parameters": {"x": "y" * 5000}}, headers=AUTH)
    assert r.status_code == 413
    assert client.post("/v1/cypher", json={"query": "RETURN 1"}, headers=AUTH).status_code == 200


def test_an_unexpected_error_is_a_json_500_with_the_request_id(api_settings, store, monkeypatch):  # noqa: ARG001
    def broken(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - stands in for GraphStore.stats
        raise RuntimeError("boom")

    monkeypatch.setattr("magdi.store.graph_store.GraphStore.stats", broken)
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as client:
        r = client.get("/v1/stats", headers={**AUTH, "X-Request-ID": "req-500"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error", "request_id": "req-500"}
    assert "boom" not in r.text


def test_docs_pages_load_their_assets_from_this_server_only(client):
    """/docs and /redoc work offline: every script, style and icon is served by the API itself."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200, html.text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert urls, html.text
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, (url, asset.status_code)


def test_the_export_operation_has_one_ndjson_response_type(client):
    responses = client.get("/openapi.json").json()["paths"]["/v1/exports/{fmt}"]["get"]["responses"]
    assert list(responses["200"]["content"]) == ["application/x-ndjson"]
