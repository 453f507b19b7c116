"""The `magdi` command line as a user runs it: import, export, cypher, stats, and clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from magdi.cli import app
from magdi.procs import free_port

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
