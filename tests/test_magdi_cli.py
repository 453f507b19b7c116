"""The `magdi` command line as a user runs it: import, export, cypher, stats, and clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from magdi.cli import app
from magdi.processes import free_port

RECORDS = [
    {
        "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
        "gold_answer": "7",
        "a_output_0": {"reasoning": "3 + 4 = 7.", "answer": "7", "confidence_level": 0.9},
        "b_output_0": {"reasoning": "3 * 4 = 12.", "answer": "12", "confidence_level": 0.6},
        "a_output_1": {"reasoning": "I disagree with b. 3 + 4 = 7.", "answer": "7", "confidence_level": 0.95},
        "b_output_1": {"reasoning": "I agree with a. It is 7.", "answer": "7", "confidence_level": 0.8},
    }
]


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "TERM": "dumb"})


def test_import_export_cypher_stats(tmp_path, neo4j_env, store):
    src = tmp_path / "mag.json"
    src.write_text(json.dumps(RECORDS))
    result = run("import", str(src), "--format", "magdi-ref", "--dataset", "gsm8k")
    assert result.exit_code == 0, result.output
    assert "imported 1 MAG" in result.output

    out = tmp_path / "out.json"
    assert run("export", "--format", "magdi-ref", "--out", str(out), "--dataset", "gsm8k").exit_code == 0
    assert json.loads(out.read_text()) == RECORDS

    result = run("cypher", "MATCH (r:Response) RETURN r.agent AS agent, r.round AS round, r.correct AS ok "
                 "ORDER BY agent, round", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows == [{"agent": "a", "round": 0, "ok": True}, {"agent": "a", "round": 1, "ok": True},
                    {"agent": "b", "round": 0, "ok": False}, {"agent": "b", "round": 1, "ok": True}]

    explained = run("cypher", "EXPLAIN MATCH (r:Response) RETURN count(r) AS n")
    assert explained.exit_code == 0 and json.loads(explained.output)["plan"]["operatorType"].startswith("Produce")

    result = run("stats", "--format", "json")
    stats = json.loads(result.output)
    assert stats["debates"] == 1 and stats["team_accuracy"] == 1.0 and stats["consensus_rate"] == 1.0


def test_writes_through_cypher_are_refused(neo4j_env, store):
    result = run("cypher", "CREATE (n:Intruder) RETURN n")
    assert result.exit_code == 2
    assert store.driver.execute_query("MATCH (n:Intruder) RETURN count(n) AS n").records[0]["n"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{file}", "--format", "csv", "--dataset", "x"], "unknown import format 'csv'"),
        (["import", "{file}", "--format", "magdi-ref"], "--dataset is required"),
        (["export", "--format", "parquet", "--out", "{out}"], "unknown export format 'parquet'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, args, message):
    file = tmp_path / "x.json"
    file.write_text("[]")
    result = run(*(a.format(file=file, out=tmp_path / "o") for a in args))
    assert result.exit_code == 2
    assert message in result.output


def test_bad_file_names_the_record_and_field_and_stores_nothing(tmp_path, neo4j_env, store):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(RECORDS + [{"question": "q", "a_output_0": {"answer": "1", "confidence_level": "x"}}]))
    result = run("import", str(bad), "--format", "magdi-ref", "--dataset", "gsm8k")
    assert result.exit_code == 2
    assert "record 1, field 'a_output_0'.confidence_level" in result.output.replace("\n", "")
    assert store.count_debates() == 0


def test_neo4j_down_is_a_message_not_a_traceback(monkeypatch):
    from magdi.settings import get_settings

    monkeypatch.setenv("MAGDI_NEO4J_URI", f"bolt://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MAGDI_CONNECT_TIMEOUT_S", "1")
    get_settings.cache_clear()
    try:
        result = run("stats")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "not reachable" in result.output and "Traceback" not in result.output


def test_version_is_the_installed_distribution_version():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"magdi {version('magdi')}"


def _commands(group, path=()):
    """Every (path, command) of the CLI tree, groups included."""
    import click

    yield path, group
    if isinstance(group, click.Group):
        for name, cmd in group.commands.items():
            yield from _commands(cmd, (*path, name))


def test_help_shows_no_type_hints_for_flags():
    import typer.main

    for path, _cmd in _commands(typer.main.get_command(app)):
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, f"`magdi {' '.join(path)} --help`:\n{result.output}"


def test_db_status_prints_commands_that_run_as_copied(tmp_path, monkeypatch):
    """At 80 columns and piped: every command is one line, it works in bash, and it names no absent tool."""
    import subprocess

    from magdi.cli import db
    from magdi.settings import get_settings
    from magdi.store.server import ServerInfo

    home = tmp_path / "a home with spaces"
    creds = home / "neo4j" / "credentials.json"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"password": "s3cret-pw", "user": "neo4j"}))
    info = ServerInfo(uri="bolt://127.0.0.1:7999", user="neo4j", password="s3cret-pw", pid=4242,
                      home=creds.parent, bolt_port=7999)
    monkeypatch.setattr(db, "_server", lambda port=None: type("S", (), {"status": lambda self: info})())
    monkeypatch.setenv("MAGDI_HOME", str(home))
    monkeypatch.delenv("MAGDI_NEO4J_URI", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no cypher-shell here
    get_settings.cache_clear()
    try:
        text = CliRunner().invoke(app, ["db", "status"], env={"COLUMNS": "80"})
        as_json = CliRunner().invoke(app, ["db", "status", "--json"], env={"COLUMNS": "80"})
    finally:
        get_settings.cache_clear()
    assert text.exit_code == 0, text.output
    assert "cypher-shell" not in text.output  # not installed: not named
    (export,) = [line.strip() for line in text.output.splitlines() if line.strip().startswith("export ")]
    shell = subprocess.run(["bash", "-c", f'{export}\necho "$MAGDI_NEO4J_URI $MAGDI_NEO4J_USER $MAGDI_NEO4J_PASSWORD"'],
                           capture_output=True, text=True, timeout=30)
    assert shell.stdout.strip() == "bolt://127.0.0.1:7999 neo4j s3cret-pw", shell.stderr
    assert json.loads(as_json.output) == {"running": True, "configured": False, "pid": 4242,
                                          "uri": "bolt://127.0.0.1:7999", "user": "neo4j",
                                          "credentials_file": str(creds), "home": str(creds.parent)}
    assert "s3cret-pw" not in as_json.output


def test_json_output_rounds_floats(neo4j_env, store, make_debate):
    store.write_debates([make_debate(i) for i in range(3)])  # agent alice is right in round 0 of 2 of 3
    result = run("stats", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "0.6666666" not in result.output
    alice = next(a for a in json.loads(result.output)["agents"] if a["agent"] == "alice")
    assert alice["round0_accuracy"] == 0.666667
