"""Bearer-token rules on every endpoint: writes/imports/Cypher always, reads unless opened."""

from __future__ import annotations

import logging

import pytest
from api_helpers import AUTH, TOKEN
from pydantic import ValidationError

from magdi.redact import RedactSecrets
from services.api.observability import JsonFormatter
from services.api.settings import ApiSettings

PANEL = {"agents": [{"name": "a", "endpoint": "sim", "model": "sim-a"}]}
READS = [
    ("GET", "/v1/debates", {}),
    ("GET", "/v1/debates/d-x", {}),
    ("GET", "/v1/jobs", {}),
    ("GET", "/v1/jobs/job-x", {}),
    ("GET", "/v1/exports/jsonl", {}),
    ("GET", "/v1/stats", {}),
]
WRITES = [
    ("POST", "/v1/debates", {"json": {"question": {"text": "1+1?"}, "panel": PANEL}}),
    ("DELETE", "/v1/debates/d-x", {}),
    ("POST", "/v1/jobs", {"json": {"name": "j", "dataset": "gsm8k", "data_path": "x.jsonl", "panel": PANEL}}),
    ("DELETE", "/v1/jobs/job-x", {}),
    ("POST", "/v1/cypher", {"json": {"query": "RETURN 1"}}),
    ("POST", "/v1/imports?format=jsonl", {"content": b""}),
]
ALL = READS + WRITES


def call(client, method, path, kwargs, headers=None):
    return client.request(method, path, headers=headers or {}, **kwargs)


@pytest.mark.parametrize(("method", "path", "kwargs"), ALL)
def test_every_endpoint_needs_the_token_by_default(client, method, path, kwargs):
    missing = call(client, method, path, kwargs)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = call(client, method, path, kwargs, {"Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]
    basic = call(client, method, path, kwargs, {"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    ok = call(client, method, path, kwargs, AUTH)
    assert ok.status_code not in (401, 403), ok.text


@pytest.mark.parametrize(("method", "path", "kwargs"), ALL)
def test_a_token_in_the_query_string_is_refused(client, method, path, kwargs):
    sep = "&" if "?" in path else "?"
    for name in ("token", "access_token", "api_key"):
        r = call(client, method, f"{path}{sep}{name}={TOKEN}", kwargs, AUTH)
        assert r.status_code == 400 and "query string" in r.json()["detail"]


def test_open_reads_open_reads_only(make_client, store):  # noqa: ARG001 - store wipes
    client = make_client(open_reads=True)
    for method, path, kwargs in READS:
        assert call(client, method, path, kwargs).status_code in (200, 404), path
        assert call(client, method, path, kwargs, {"Authorization": "Bearer wrong"}).status_code == 401
    for method, path, kwargs in WRITES:
        assert call(client, method, path, kwargs).status_code == 401, path


def test_without_a_configured_token_everything_is_closed(make_client, store):  # noqa: ARG001
    client = make_client(token=None)
    for method, path, kwargs in ALL:
        r = call(client, method, path, kwargs, AUTH)
        assert r.status_code == 403 and "MAGDI_API_TOKEN" in r.json()["detail"], path
    reads_open = make_client(token=None, open_reads=True)
    assert reads_open.get("/v1/debates").status_code == 200
    assert reads_open.post("/v1/cypher", json={"query": "RETURN 1"}).status_code == 403


def test_insecure_dev_opens_everything_without_a_token(make_client, store):  # noqa: ARG001
    client = make_client(token=None, insecure_dev=True)
    assert client.post("/v1/cypher", json={"query": "RETURN 1 AS one"}).json()["rows"] == [[1]]
    assert client.get("/v1/stats").status_code == 200


def test_the_token_never_reaches_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.get("/v1/debates", headers=AUTH)
    client.get("/v1/debates", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
    client.get(f"/v1/debates?token={TOKEN}", headers=AUTH)
    logging.getLogger("probe").warning("header was Authorization: Bearer %s", TOKEN)
    formatter, redact = JsonFormatter(), RedactSecrets()  # the filter `magdi serve` installs on its handler
    ours = [r for r in caplog.records if r.name.startswith("services.api")]
    assert ours and all(TOKEN not in formatter.format(r) for r in ours)  # even without the filter
    for record in caplog.records:
        redact.filter(record)
        assert TOKEN not in formatter.format(record)
    assert any(getattr(r, "route", None) == "/v1/debates" for r in caplog.records)


@pytest.mark.parametrize("token", ["short", "changeme", "x" * 15, "changemechangeme", "a" * 16, "abcd" * 4,
                                   "my-secret-0123456789", "0123456701234567"])
def test_weak_tokens_are_refused_at_startup(token):
    with pytest.raises(ValidationError, match="MAGDI_API_TOKEN"):
        ApiSettings(token=token)
