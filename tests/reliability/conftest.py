"""Fixtures for the reliability tests: the generator tests' panel fixtures, and the row recorder.

The simulated panel fixtures (`gsm8k`, `start_panel`) are those of `tests/generator/conftest.py`,
loaded under another module name so that both folders can run in one session. Every process a
test starts is stopped by its pid in a `finally` (panels by `start_panel`, generators and workers
by `generator_helpers.running`, Neo4j by `ManagedNeo4j.stop`).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import GENERATOR_TESTS, Probe, Recorder, Row, env_out_dir

_spec = importlib.util.spec_from_file_location("generator_conftest", GENERATOR_TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
_generator_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_generator_conftest)
gsm8k = _generator_conftest.gsm8k
start_panel = _generator_conftest.start_panel


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    out = env_out_dir() or Path(tempfile.mkdtemp(prefix="magdi-reliability-"))
    yield Recorder(out)


@pytest.fixture
def record(recorder: Recorder, request: pytest.FixtureRequest):  # noqa: ANN201
    """record(Row) or record(Probe) for this test; the row's `test` is filled in."""

    def add(row: Row | Probe) -> None:
        row.test = request.node.nodeid
        recorder.add(row)

    return add
