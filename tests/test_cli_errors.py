"""Errors the user fixes exit 2 with a message; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from magdi.cli import app
from magdi.errors import UserError

runner = CliRunner()


def test_a_user_error_is_a_message_and_exit_2(tmp_path):
    result = runner.invoke(app, ["export", "--format", "nope", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2, result.output
    assert "unknown export format 'nope'" in result.output and "Traceback" not in result.output


def test_a_bug_is_not_reported_as_bad_input(tmp_path, monkeypatch):
    """A plain ValueError from inside a command is a bug: it propagates (exit 1, traceback), not exit 2."""
    import magdi.cli.data as data

    def broken(name):  # stands in for a bug in an exporter, below the CLI's error mapping
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(data, "exporter", broken)
    result = runner.invoke(app, ["export", "--format", "jsonl", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError) and not isinstance(result.exception, UserError)


BROKEN_TRAINER_CLI = """
import importlib.abc, importlib.util, sys

class Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):  # trainer/cli.py as a bug would make it: an import that fails inside
        import a_dependency_nobody_installed

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, Loader()) if name == "trainer.cli" else None

sys.meta_path.insert(0, Finder())
import magdi.cli
"""


def test_a_broken_command_module_fails_loudly_instead_of_vanishing():
    """A part that is present but whose import breaks (here a missing dependency) is a bug, not absence."""
    proc = subprocess.run([sys.executable, "-c", BROKEN_TRAINER_CLI], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "a_dependency_nobody_installed" in proc.stderr


def test_every_command_is_registered():
    import typer

    names = set(typer.main.get_command(app).commands)
    assert {"generate", "worker", "serve", "train", "eval", "teachers", "db", "jobs", "models"} <= names


@pytest.mark.parametrize("path", [
    "magdi.formats:FormatError", "magdi.datasets:DatasetError", "magdi.panel:PanelError",
    "magdi.policy:PolicyError", "magdi.policy:DataPathError", "magdi.policy:EgressError",
    "magdi.settings:Neo4jNotConfigured", "magdi.store.connection:Neo4jUnavailable",
    "magdi.store.graph_store:WriteConflict", "magdi.store.graph_store:InvalidCursor",
    "magdi.store.jobs:JobConflict", "magdi.store.job_names:UnknownJob", "magdi.store.cypher:CypherRejected",
    "magdi.store.backup:BackupError", "magdi.store.server:Neo4jStartError", "magdi.models:ModelPullError",
    "services.generator.client:PreflightError", "services.generator.protocols.demos:DemoError",
    "trainer.config:ConfigError", "trainer.sources:DataError",
])
def test_domain_errors_are_user_errors(path):
    import importlib

    module, name = path.split(":")
    assert issubclass(getattr(importlib.import_module(module), name), UserError)
