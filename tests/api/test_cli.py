"""`magdi serve`: registered on the core CLI, refuses bad settings, and serves against the real Neo4j."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from api_helpers import TOKEN
from typer.testing import CliRunner

from magdi.cli import app as magdi_app


def test_serve_is_registered_with_host_and_port():
    result = CliRunner().invoke(magdi_app, ["serve", "--help"])
    assert result.exit_code == 0 and "--host" in result.output and "--port" in result.output


def test_a_weak_token_stops_serve_before_it_starts(neo4j_env):  # noqa: ARG001 - Neo4j configured
    result = CliRunner().invoke(magdi_app, ["serve"], env={"MAGDI_API_TOKEN": "short"})
    assert result.exit_code == 2 and "token" in result.output.lower()


def test_serve_runs_uvicorn_against_the_configured_neo4j(neo4j_env):  # noqa: ARG001 - sets MAGDI_NEO4J_*
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MAGDI_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-c", "from magdi.cli import app; app()", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "magdi serve did not become ready"
            time.sleep(0.3)
        r = httpx.get(f"{base}/v1/stats", headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "cli-1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "cli-1"
        assert httpx.get(f"{base}/v1/stats").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [e for e in logs if e.get("route") == "/v1/stats"]
    assert any(e.get("request_id") == "cli-1" and e["status"] == 200 for e in access), stderr[-2000:]
    assert TOKEN not in stderr
