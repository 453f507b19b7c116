"""Bad input is refused with a clear message BEFORE any paid call and before a job exists.

Each case runs the real `magdi generate` command (in-process) against a real endpoint: the
simulated panel, a closed port, or a plain HTTP server answering /models with the wrong schema.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from generator_helpers import panel_dict, running, write_panel
from typer.testing import CliRunner

from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.teachers.runner import free_port

runner = CliRunner()


def generate(panel: Path, data: Path, *extra: str, job: str = "bad") -> Any:
    from magdi.cli import app

    args = ["generate", "--panel", str(panel), "--dataset", "gsm8k", "--data", str(data), "--limit", "2",
            "--job", job, "--no-progress", *extra]
    return runner.invoke(app, args)


@pytest.fixture
def sim(start_panel):  # noqa: ANN001, ANN201
    return start_panel()


def assert_refused(result: Any, message: str, store: GraphStore, sim: Any) -> None:
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert JobStore(store).list() == [], "no job is created for bad input"
    assert sim.stats()["requests"] == 0, "no completion was requested"


def test_unknown_format_and_missing_fields(store: GraphStore, neo4j_env, sim, gsm8k, tmp_path: Path) -> None:  # noqa: ANN001
    panel = write_panel(tmp_path / "p.yaml", sim.base_url)
    assert_refused(generate(panel, gsm8k["test"], "--format", "csvish"), "unknown format 'csvish'", store, sim)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"question": "What is 1 + 1?"}) + "\n")
    assert_refused(generate(panel, broken), "field 'answer': missing or empty", store, sim)
    assert_refused(generate(panel, tmp_path / "nope.jsonl"), "no such file", store, sim)


def test_bad_panels(store: GraphStore, neo4j_env, sim, gsm8k, tmp_path: Path) -> None:  # noqa: ANN001
    dup = panel_dict(sim.base_url, agents=[("a", "175b_verification", "chatgpt"), ("a", "6b_verification", "bard")])
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump(dup))
    assert_refused(generate(tmp_path / "dup.yaml", gsm8k["test"]), "duplicate agent names: a", store, sim)
    typo = panel_dict(sim.base_url)
    typo["agents"][0]["temprature"] = 0.3
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo))
    assert_refused(generate(tmp_path / "typo.yaml", gsm8k["test"]), "temprature: unknown key", store, sim)
    remote = panel_dict("https://api.openai.invalid/v1", api_key_env="TEST_SURELY_UNSET_KEY")
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(remote))
    assert_refused(generate(tmp_path / "remote.yaml", gsm8k["test"]),
                   "environment variable TEST_SURELY_UNSET_KEY is not set", store, sim)
    unknown = panel_dict(sim.base_url, agents=[("a", "gpt-17", "chatgpt"), ("b", "6b_verification", "bard")])
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(unknown))
    assert_refused(generate(tmp_path / "unknown.yaml", gsm8k["test"]), "model 'gpt-17' is not served", store, sim)
    convincing = ("--convincing", str(gsm8k["convincing"]))
    nodemos = panel_dict(sim.base_url, agents=[("a", "175b_verification", "gpt5"), ("b", "6b_verification", "bard")])
    (tmp_path / "nodemos.yaml").write_text(yaml.safe_dump(nodemos))
    assert_refused(generate(tmp_path / "nodemos.yaml", gsm8k["test"], *convincing),
                   "no convincing samples for gpt5", store, sim)


def test_unreachable_and_wrong_schema_endpoints(store: GraphStore, neo4j_env, sim, gsm8k,  # noqa: ANN001
                                                tmp_path: Path) -> None:
    closed = write_panel(tmp_path / "closed.yaml", f"http://127.0.0.1:{free_port()}/v1")
    assert_refused(generate(closed, gsm8k["test"]), "unreachable", store, sim)
    site = tmp_path / "site"
    (site / "v1").mkdir(parents=True)
    (site / "v1" / "models").write_text(json.dumps({"models": ["175b_verification"]}))
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    with running(cmd, dict(os.environ), tmp_path / "http.log"):
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        wrong = write_panel(tmp_path / "wrong.yaml", f"http://127.0.0.1:{port}/v1")
        assert_refused(generate(wrong, gsm8k["test"]), "not an OpenAI model list", store, sim)


def test_existing_job_needs_resume_and_resume_needs_a_job(store: GraphStore, neo4j_env, sim, gsm8k,  # noqa: ANN001
                                                          tmp_path: Path) -> None:
    panel = write_panel(tmp_path / "p.yaml", sim.base_url)
    missing = generate(panel, gsm8k["test"], "--resume", job="ghost")
    assert missing.exit_code == 2 and "no job named 'ghost' to resume" in missing.output
    first = generate(panel, gsm8k["test"], job="twice")
    assert first.exit_code == 0, first.output
    again = generate(panel, gsm8k["test"], job="twice")
    assert again.exit_code == 2 and "already exists" in again.output and "--resume" in again.output
    changed = generate(panel, gsm8k["test"], "--max-rounds", "1", "--resume", job="twice")
    assert changed.exit_code == 2 and "different configuration" in changed.output
    calls = sim.stats()["completions"]
    resumed = generate(panel, gsm8k["test"], "--resume", job="twice")
    assert resumed.exit_code == 0, resumed.output
    assert sim.stats()["completions"] == calls, "resuming a finished job makes no call"
