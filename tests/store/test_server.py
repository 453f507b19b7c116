"""The managed Neo4j really starts from the Maven Central jars, answers Cypher, and stops cleanly.

Every server started here is stopped by the `servers` fixture's teardown, also when a test fails.
The first run downloads the jars (~125 MB, about a minute); later runs use the shared cache.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import neo4j
import pytest
from neo4j.exceptions import AuthError

from magdi.store.server import (
    NEO4J_VERSION,
    ManagedNeo4j,
    Neo4jInstallError,
    Neo4jStartError,
    default_cache_dir,
    find_java,
)

STARTUP_TIMEOUT = 240.0  # generous: CI machines with 2 busy cores are slow, the normal start is ~10 s
FAST_JVM = ("-XX:TieredStopAtLevel=1",)  # C1 only: ~30% faster startup, and these tests run tiny queries


@pytest.fixture(scope="session")
def neo4j_lib() -> Path:
    """The cached jars (downloading them once), or skip where neither Java nor Maven is available."""
    try:
        find_java()
    except Neo4jInstallError as exc:
        pytest.skip(str(exc))
    cached = (default_cache_dir() / f"neo4j-{NEO4J_VERSION}" / "installed.json").is_file()
    if not cached and not (os.environ.get("MAGDI_MVN") or shutil.which("mvn")):
        pytest.skip("Neo4j jars not cached and no `mvn` to fetch them")
    return ManagedNeo4j(Path("unused")).ensure_installed()


@pytest.fixture
def servers(neo4j_lib: Path) -> Iterator[Callable[..., ManagedNeo4j]]:
    """Factory for servers that are always stopped at teardown."""
    made: list[ManagedNeo4j] = []

    def make(home: Path, **kwargs: object) -> ManagedNeo4j:
        server = ManagedNeo4j(home, startup_timeout=STARTUP_TIMEOUT, jvm_args=FAST_JVM, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop(timeout=20)


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_start_with_auth_writes_private_credentials_and_stops(tmp_path: Path, servers) -> None:
    server = servers(tmp_path / "neo4j", auth=True, tx_memory_max="64m")
    info = server.start()

    creds_file = tmp_path / "neo4j" / "credentials.json"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    # auth guards bolt, not the files: the store (written 0644 by Neo4j) sits in folders only we can enter
    for folder in (tmp_path / "neo4j", tmp_path / "neo4j" / "data"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    creds = json.loads(creds_file.read_text())
    assert (creds["uri"], creds["user"], creds["password"]) == (info.uri, info.user, info.password)
    assert info.password and len(info.password) >= 16
    assert info.uri == f"bolt://127.0.0.1:{info.bolt_port}"

    with neo4j.GraphDatabase.driver(info.uri, auth=(info.user, info.password)) as driver:
        assert driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1
        driver.execute_query("CREATE (:Probe {x: 1})")
        labels = [r["label"] for r in driver.execute_query("CALL db.labels()").records]
        assert "Probe" in labels
        # db.memory.transaction.max: one query cannot take the heap (collecting 10^7 integers needs ~200 MB)
        with pytest.raises(neo4j.exceptions.TransientError) as err, driver.session() as session:
            session.run("UNWIND range(1, 10000000) AS x RETURN size(collect(x)) AS n").consume()  # not retried
        assert "MemoryPoolOutOfMemoryError" in (err.value.code or ""), err.value
    with pytest.raises(AuthError), neo4j.GraphDatabase.driver(info.uri, auth=(info.user, "wrong-password")) as bad:
        bad.verify_connectivity()

    assert server.status() == info
    assert server.start().pid == info.pid  # idempotent: finds the running server

    assert server.stop() is True
    assert _pid_gone(info.pid)
    assert not (tmp_path / "neo4j" / "run" / "neo4j.pid").exists()
    assert server.status() is None
    assert server.stop() is False


def test_a_stored_password_starting_with_a_dash_is_not_read_as_an_option(tmp_path: Path, servers) -> None:
    """Regression: a random urlsafe password once began with "-" and neo4j-admin took it for a flag."""
    home = tmp_path / "neo4j"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"password": "-looks-like-an-option-0123456789"}))
    info = servers(home, auth=True).start()
    assert info.password == "-looks-like-an-option-0123456789"
    with neo4j.GraphDatabase.driver(info.uri, auth=(info.user, info.password)) as driver:
        assert driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1


def test_start_without_auth(tmp_path: Path, servers) -> None:
    server = servers(tmp_path / "neo4j", auth=False)
    info = server.start()
    assert info.password is None
    with neo4j.GraphDatabase.driver(info.uri, auth=None) as driver:
        assert driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1
    assert server.stop() is True
    assert _pid_gone(info.pid)


def test_port_in_use_fails_with_log_tail(tmp_path: Path, servers) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = servers(tmp_path / "neo4j", auth=False, bolt_port=port)
        with pytest.raises(Neo4jStartError, match="Address already in use"):
            server.start()
    assert not (tmp_path / "neo4j" / "run" / "neo4j.pid").exists()


def test_missing_maven_is_a_clear_install_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGDI_MVN", str(tmp_path / "no-such-mvn"))
    server = ManagedNeo4j(tmp_path / "neo4j", cache_dir=tmp_path / "cache")
    with pytest.raises(Neo4jInstallError, match="Maven"):
        server.ensure_installed()
