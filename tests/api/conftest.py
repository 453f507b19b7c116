"""Fixtures for the API tests: apps built by the factory, on the session's REAL Neo4j.

One app (and TestClient, whose context runs the lifespan) serves most tests; `make_client` builds
apps with other settings (open reads, no token, tiny limits). The `client` fixture depends on the
root conftest's `store`, which empties the database first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from api_helpers import CHROMIUM, CHROMIUM_ARGS, POLICY, TEST_HOSTS, TOKEN, serve
from fastapi.testclient import TestClient

from magdi.settings import Neo4jSettings
from magdi.store.graph_store import GraphStore
from services.api.main import create_app
from services.api.settings import ApiSettings


@pytest.fixture(scope="session", autouse=True)
def _no_api_env() -> Iterator[None]:
    """MAGDI_API_* of the developer's shell must not change what the tests configure."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MAGDI_API_")}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def api_settings(neo4j_server: Neo4jSettings) -> ApiSettings:
    return ApiSettings(token=TOKEN, neo4j=neo4j_server, policy=POLICY, allowed_hosts=TEST_HOSTS,
                       cypher_rate_per_min=100_000)


@pytest.fixture(scope="session")
def session_client(api_settings: ApiSettings, driver) -> Iterator[TestClient]:  # noqa: ARG001 - schema first
    with TestClient(create_app(api_settings)) as client:
        yield client


@pytest.fixture
def client(session_client: TestClient, store: GraphStore) -> TestClient:  # noqa: ARG001 - store wipes the DB
    return session_client


@pytest.fixture
def make_client(neo4j_server: Neo4jSettings) -> Iterator[Callable[..., TestClient]]:
    """`make_client(open_reads=True, token=None, ...)`: a client of an app with other settings."""
    with ExitStack() as stack:

        def build(**overrides: Any) -> TestClient:
            values: dict[str, Any] = {"token": TOKEN, "neo4j": neo4j_server, "policy": POLICY,
                                      "allowed_hosts": TEST_HOSTS, "cypher_rate_per_min": 100_000, **overrides}
            return stack.enter_context(TestClient(create_app(ApiSettings(**values))))

        yield build


PANEL = {"name": "sim", "agents": [
    {"name": "alice", "endpoint": "sim", "model": "sim-a"},
    {"name": "bob", "endpoint": "sim", "model": "sim-b", "temperature": 0.5},
]}


@pytest.fixture
def panel() -> dict[str, Any]:
    return {"name": PANEL["name"], "agents": [dict(a) for a in PANEL["agents"]]}


@pytest.fixture
def browser():  # noqa: ANN201 - playwright's Browser
    """Debian's headless Chromium through playwright; closed at teardown, also when the test fails."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def open_page(api_settings, browser):  # noqa: ANN001, ANN201
    """open_page(path, width) -> a loaded page of an open-reads API; script errors and dialogs are recorded."""
    with serve(create_app(api_settings.model_copy(update={"open_reads": True}))) as base:
        pages = []

        def open_(path: str, width: int = 1400) -> Any:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.problems = []
            page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page.problems.append(str(e)))
            page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(base + path)
            pages.append(page)
            return page

        yield open_
        for page in pages:
            page.close()
