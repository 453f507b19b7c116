"""Integrity rows of the fault matrix (issue 10): input that used to overwrite, merge or crash.

Each row starts from stored data, feeds the bad input through the real CLI (typer's CliRunner,
in-process) and the real API (TestClient), and compares a snapshot of every node and relationship
before and after: nothing stored may be lost or changed, and nothing may be added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from generator_helpers import write_panel
from reliability_helpers import Row, graph_snapshot, snapshot_diff
from typer.testing import CliRunner

from magdi.formats import jsonl
from magdi.mag import ParseStatus
from magdi.settings import Neo4jSettings
from magdi.store.graph_store import DebateFilter, GraphStore

TOKEN = "integrity-token-0123456789"
DEEP = 100_000
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    from magdi.cli import app

    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def api(neo4j_server: Neo4jSettings):  # noqa: ANN201
    from services.api.main import create_app
    from services.api.settings import ApiSettings

    with TestClient(create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server)), base_url="http://localhost") as client:
        def post(path: str, body: str, **params: str) -> tuple[int, str]:
            r = client.post(path, params=params, content=body.encode(),
                            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
            return r.status_code, r.text

        yield post


def refused(outcomes: list[tuple[str, int, str]], expected: dict[str, tuple[int, str]]) -> list[str]:
    """Problems: an outcome without its exit code / status and message, or with a traceback."""
    problems = []
    for name, code, text in outcomes:
        want_code, want_text = expected[name]
        if code != want_code or want_text not in text or "Traceback" in text:
            problems.append(f"{name}: {code} {text[:300]}")
    return problems


def line_with(debate: Any, **changes: Any) -> str:
    body = json.loads(jsonl.to_line(debate))
    for path, value in changes.items():
        target = body
        *head, last = path.split("__")
        for key in head:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = value
    return json.dumps(body)


def test_question_conflict(store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path],  # noqa: ANN001
                           tmp_path: Path, api, record) -> None:  # noqa: ANN001
    """Two GSM8K files under one dataset name, then an import that would change a stored question."""
    panel = start_panel(latency_s=0.01)
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url)
    part = tmp_path / "lines-31-32.jsonl"
    part.write_text("\n".join(gsm8k["test"].read_text().splitlines()[30:32]) + "\n")
    common = ["generate", "--panel", str(panel_file), "--dataset", "gsm8k", "--max-rounds", "1", "--no-progress"]
    code, out = cli(*common, "--data", str(gsm8k["test"]), "--limit", "2", "--job", "first")
    assert code == 0, out
    first = {i: store.get_debate(i) for i in store.debate_ids(DebateFilter(job_id="job-first"))}
    before = graph_snapshot(store.driver)
    code, out = cli(*common, "--data", str(part), "--job", "second")
    assert code == 0, out
    second = [store.get_debate(i) for i in store.debate_ids(DebateFilter(job_id="job-second"))]
    after_second = graph_snapshot(store.driver)
    diff = snapshot_diff(before, after_second)
    intact = all(store.get_debate(i) == d for i, d in first.items())
    golds = sorted(d.question.gold_answer for d in second)

    # a magdi-ref file holding a stored question with other whitespace: same question id, other text
    stored_q = next(iter(first.values())).question
    ref = [{"question": stored_q.text.replace(" ", "  ", 1), "gold_answer": stored_q.gold_answer,
            "a_output_0": {"reasoning": "r", "answer": stored_q.gold_answer, "confidence_level": 0.9}}]
    ref_file = tmp_path / "retyped.json"
    ref_file.write_text(json.dumps(ref))
    outcomes = [("cli import", *cli("import", "--format", "magdi-ref", "--dataset", "gsm8k", str(ref_file))),
                ("api import", *api("/v1/imports", json.dumps(ref), format="magdi-ref", dataset="gsm8k"))]
    problems = refused(outcomes, {"cli import": (2, "is stored with other content"),
                                  "api import": (409, "is stored with other content")})
    refused_diff = snapshot_diff(after_second, graph_snapshot(store.driver))
    for key in diff:
        diff[key] += refused_diff[key] if key != "added" else 0
    record(Row(
        fault="question conflict",
        injected="`magdi generate` on GSM8K test records 0-1 (job first), then on lines 31-32 of the same file "
                 "(job second, record 0 = another question) under the same dataset name; then a magdi-ref import "
                 "(CLI and API) of a stored question with its text retyped",
        happened=f"job second stored {len(second)} MAGs on their own questions (golds {', '.join(golds)}); job "
                 f"first's MAGs, questions and labels {'identical' if intact else 'CHANGED'}; the retyped import "
                 f"refused (CLI exit 2, API 409) naming the question, nothing written"
                 + (f"; problems: {problems}" if problems else ""),
        nodes_lost=diff["lost"], nodes_duplicated=refused_diff["added"], nodes_changed=diff["changed"],
        recover_s=None,
    ))
    assert intact and golds == ["109", "80"] and len(second) == 2, (golds, len(second))
    assert diff == {"lost": 0, "changed": 0, "added": diff["added"]} and refused_diff["added"] == 0, diff
    assert not problems, problems


@pytest.fixture
def seeded(store: GraphStore, make_debate) -> GraphStore:  # noqa: ANN001
    store.write_debates([make_debate(i, job_id="job-seed") for i in range(3)] + [make_debate(7)])
    return store


def run_row(seeded: GraphStore, tmp_path: Path, cases: list[tuple[str, str, Any]],
            expected: dict[str, tuple[int, str]]) -> tuple[dict[str, int], list[str]]:
    """Feed each (name, kind, payload) case; kind cli-jsonl / cli-ref / cli-data write the payload to
    a file for `magdi import` / `magdi generate`, api-jsonl / api-ref post it to /v1/imports."""
    before = graph_snapshot(seeded.driver)
    outcomes = []
    for name, kind, payload in cases:
        path = tmp_path / name.replace(" ", "-")
        if kind.startswith("cli"):
            path.write_text(payload)
        if kind == "cli-jsonl":
            outcomes.append((name, *cli("import", "--format", "jsonl", str(path))))
        elif kind == "cli-ref":
            outcomes.append((name, *cli("import", "--format", "magdi-ref", "--dataset", "gsm8k", str(path))))
        elif kind == "cli-data":
            panel = write_panel(tmp_path / "panel.yaml", "http://127.0.0.1:9/v1")
            outcomes.append((name, *cli("generate", "--panel", str(panel), "--dataset", "gsm8k", "--data", str(path),
                                        "--job", "never", "--no-progress")))
        else:
            params = {"format": "jsonl"} if kind == "api-jsonl" else {"format": "magdi-ref", "dataset": "gsm8k"}
            outcomes.append((name, *payload(params)))
    return snapshot_diff(before, graph_snapshot(seeded.driver)), refused(outcomes, expected)


def test_duplicate_records(seeded: GraphStore, make_debate, neo4j_env, tmp_path: Path, api, record) -> None:  # noqa: ANN001
    """Two records of one debate in one file (different panels) used to become one merged debate."""
    one = make_debate(11, job_id="job-seed")
    other_panel = make_debate(11, job_id="job-seed", agents=("alice", "bob"))
    body = "\n".join([jsonl.to_line(one), jsonl.to_line(make_debate(12, job_id="job-seed")),
                      jsonl.to_line(other_panel)]) + "\n"
    rec = {"question": "What is 2 + 2?", "gold_answer": "4", "a_output_0": {"reasoning": "r", "answer": "4"}}
    ref = json.dumps([rec, {**rec, "gold_answer": "4"}])
    cases = [("cli jsonl", "cli-jsonl", body), ("api jsonl", "api-jsonl", lambda p: api("/v1/imports", body, **p)),
             ("cli ref", "cli-ref", ref), ("api ref", "api-ref", lambda p: api("/v1/imports", ref, **p))]
    expected = {"cli jsonl": (2, "line 3: the same debate as line 1"), "api jsonl": (422, "line 3: the same debate"),
                "cli ref": (2, "record 1: the same record as record 0"), "api ref": (422, "the same record as")}
    diff, problems = run_row(seeded, tmp_path, cases, expected)
    record(Row(
        fault="duplicate records",
        injected="a jsonl file whose lines 1 and 3 are one debate (same job and question, 3 vs 2 agents), and a "
                 "magdi-ref file with one record twice; each through `magdi import` and POST /v1/imports",
        happened="all 4 refused naming both records (CLI exit 2 without traceback, API 422), nothing written"
                 + (f"; problems: {problems}" if problems else ""),
        nodes_lost=diff["lost"], nodes_duplicated=diff["added"], nodes_changed=diff["changed"], recover_s=None,
    ))
    assert diff == {"lost": 0, "changed": 0, "added": 0} and not problems, (diff, problems)
    assert seeded.get_debate(one.id) is None


def test_deep_json(seeded: GraphStore, make_debate, neo4j_env, tmp_path: Path, api, record) -> None:  # noqa: ANN001
    deep = "[" * DEEP + "]" * DEEP
    line = line_with(make_debate(21, job_id="job-seed"))[:-1] + f', "notes": {deep}}}\n'
    ref = '[{"question": "q?", "gold_answer": "1", "a_output_0": {"answer": "1"}, "meta": ' + deep + "}]"
    data = json.dumps({"question": "What is 1 + 1?", "answer": "#### 2"}) + "\n" \
        + '{"question": "q", "answer": "#### 1", "notes": ' + deep + "}\n"
    cases = [("cli jsonl", "cli-jsonl", line), ("api jsonl", "api-jsonl", lambda p: api("/v1/imports", line, **p)),
             ("cli ref", "cli-ref", ref), ("api ref", "api-ref", lambda p: api("/v1/imports", ref, **p)),
             ("cli generate data", "cli-data", data)]
    expected = {"cli jsonl": (2, "line 1, field 'notes': JSON nested deeper than 64 levels"),
                "api jsonl": (422, "line 1, field 'notes': JSON nested deeper than 64 levels"),
                "cli ref": (2, "record 0, field 'meta': JSON nested deeper than 64 levels"),
                "api ref": (422, "record 0, field 'meta': JSON nested deeper than 64 levels"),
                "cli generate data": (2, "line 2, field 'notes': JSON nested deeper than 64 levels")}
    diff, problems = run_row(seeded, tmp_path, cases, expected)
    record(Row(
        fault="deep JSON",
        injected=f"a value nested {DEEP:,} levels deep in a jsonl line and a magdi-ref record (`magdi import`, "
                 "POST /v1/imports) and in a GSM8K data file (`magdi generate`)",
        happened="all 5 refused naming record and field (CLI exit 2 without traceback, API 422), nothing written; "
                 "values deeper than 64 levels are refused the same way when Python could parse them"
                 + (f"; problems: {problems}" if problems else ""),
        nodes_lost=diff["lost"], nodes_duplicated=diff["added"], nodes_changed=diff["changed"], recover_s=None,
    ))
    assert diff == {"lost": 0, "changed": 0, "added": 0} and not problems, (diff, problems)


def test_int64_overflow(seeded: GraphStore, make_debate, neo4j_env, tmp_path: Path, api, record) -> None:  # noqa: ANN001
    cases, expected = [], {}
    for field in ("tokens_in", "tokens_out", "attempts", "round"):
        line = line_with(make_debate(31, job_id="job-seed"), **{f"responses__2__{field}": 2**64}) + "\n"
        cases += [(f"cli {field}", "cli-jsonl", line),
                  (f"api {field}", "api-jsonl", lambda p, body=line: api("/v1/imports", body, **p))]
        message = f"field 'responses.2.{field}': Input should be less than or equal to 9223372036854775807"
        expected |= {f"cli {field}": (2, message), f"api {field}": (422, message)}
    ref = json.dumps([{"question": "q?", "gold_answer": "1", f"a_output_{2**64}": {"answer": "1"}}])
    cases += [("cli ref round", "cli-ref", ref), ("api ref round", "api-ref", lambda p: api("/v1/imports", ref, **p))]
    expected |= {"cli ref round": (2, "round 18446744073709551616 is out of range"),
                 "api ref round": (422, "round 18446744073709551616 is out of range")}
    diff, problems = run_row(seeded, tmp_path, cases, expected)
    record(Row(
        fault="int64 overflow",
        injected="2^64 in `tokens_in`, `tokens_out`, `attempts` and `round` of a jsonl response, and as the round "
                 "of a magdi-ref `<agent>_output_<round>` key; each through `magdi import` and POST /v1/imports",
        happened=f"all {len(cases)} refused naming the line/record and field (CLI exit 2 without traceback, API "
                 "422), nothing written" + (f"; problems: {problems}" if problems else ""),
        nodes_lost=diff["lost"], nodes_duplicated=diff["added"], nodes_changed=diff["changed"], recover_s=None,
    ))
    assert diff == {"lost": 0, "changed": 0, "added": 0} and not problems, (diff, problems)
    assert all(r.parse_status is ParseStatus.VALID for r in seeded.get_debate(make_debate(0, job_id="job-seed").id)
               .responses)
