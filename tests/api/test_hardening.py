"""Cypher admission (a cap on queries at once, a rate per client) and the endpoint listing for callers.

The review's probes (health under a Cypher flood, the memory cap, Host headers, anonymous readers,
insecure-dev binds) run in tests/reliability/test_security.py, which records them for
docs/reliability.md.
"""

from __future__ import annotations

import pytest
from api_helpers import AUTH, POLICY

from services.api.throttle import CypherGate, Throttled


def test_cypher_rate_per_client_is_a_429_with_retry_after(make_client, store):  # noqa: ARG001
    client = make_client(cypher_rate_per_min=8)  # bursts of 2
    codes = [client.post("/v1/cypher", json={"query": "RETURN 1"}, headers=AUTH).status_code for _ in range(3)]
    assert codes[:2] == [200, 200] and codes[2] == 429
    refused = client.post("/v1/cypher", json={"query": "RETURN 1"}, headers=AUTH)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "a minute" in refused.json()["detail"]


def test_cypher_gate_counts_per_client_and_refills():
    now = [0.0]
    gate = CypherGate(max_concurrent=1, per_minute=60, clock=lambda: now[0])  # 1/s, bursts of 15
    for _ in range(15):
        with gate.admit("a"):
            pass
    with pytest.raises(Throttled), gate.admit("a"):
        pass
    with gate.admit("b"):  # another client has its own bucket...
        with pytest.raises(Throttled, match="running"), gate.admit("c"):  # ...but not its own slot
            pass
    now[0] += 1.0
    with gate.admit("a"):
        pass


def test_callers_discover_the_declared_endpoints_by_name(client):
    r = client.get("/v1/endpoints", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["endpoints"] == [{"name": "sim", "models": ["sim-a", "sim-b"], "max_tokens": 2048}]
    assert r.json()["job_max_questions"] == POLICY.job_max_questions
    assert "127.0.0.1" not in r.text
