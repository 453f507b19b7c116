"""The panel's one command line: every config field is one option, `magdi teachers serve` is the same command.

    python -m services.teachers --solutions ... --questions ... --alias gpt-4=175b_verification \
        --per-model gpt-4.error_rate=1
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from repo_data import DATA_DIR
from typer.testing import CliRunner

from magdi.cli import app as magdi_app
from magdi.errors import UserError
from magdi.processes import free_port, stop_process
from services.teachers import cli
from services.teachers.config import PanelSimConfig

SOLUTIONS, QUESTIONS = DATA_DIR / "gsm8k" / "model_solutions.jsonl", DATA_DIR / "gsm8k" / "test.jsonl"
HELP_ENV = {"COLUMNS": "200", "TERM": "dumb"}


def options_in(help_text: str) -> list[str]:
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text)) - {"--help"})


def test_every_config_field_is_one_option_and_magdi_teachers_serve_lists_the_same():
    own = CliRunner().invoke(cli.app, ["--help"], env=HELP_ENV)
    forwarded = CliRunner().invoke(magdi_app, ["teachers", "serve", "--help"], env=HELP_ENV)
    assert own.exit_code == 0 and forwarded.exit_code == 0, own.output + forwarded.output
    assert "Usage: magdi teachers serve" in forwarded.output
    assert options_in(own.output) == options_in(forwarded.output)

    fields = {cli.flag(name, field): name for name, field in PanelSimConfig.model_fields.items()}
    assert len(fields) == len(PanelSimConfig.model_fields)  # no two fields share an option
    assert set(fields) | {"--no-retry-after-header"} <= set(options_in(own.output))
    for name, field in PanelSimConfig.model_fields.items():  # each option says what its field says
        assert " ".join(field.description.split()[:4]) in " ".join(own.output.split()), name


def test_options_override_the_config_file_and_merge_into_its_maps(tmp_path: Path):
    file = tmp_path / "panel.json"
    file.write_text(json.dumps({"solutions_path": str(SOLUTIONS), "questions_path": str(QUESTIONS), "seed": 7,
                                "error_rate": 0.5, "aliases": {"a": "6b_finetuning"},
                                "per_model": {"a": {"latency_s": 1.0}}}))
    config = cli.build_config(file, {"error_rate": 0.1, "aliases": ["gpt-3.5-turbo=175b_verification"],
                                     "per_model": ["gpt-3.5-turbo.error_rate=1", "a.error_rate=0.2"],
                                     "retry_after_header": False, "models": [], "down_models": ["a"]})
    assert (config.seed, config.error_rate, config.retry_after_header) == (7, 0.1, False)
    assert config.aliases == {"a": "6b_finetuning", "gpt-3.5-turbo": "175b_verification"}
    assert config.per_model == {"a": {"latency_s": 1.0, "error_rate": "0.2"}, "gpt-3.5-turbo": {"error_rate": "1"}}
    assert config.for_model("gpt-3.5-turbo").error_rate == 1.0 and config.for_model("a").error_rate == 0.2
    assert config.models is None and config.down_models == ["a"]


@pytest.mark.parametrize(("given", "message"), [
    ({}, "missing --solutions, --questions"),
    ({"solutions_path": SOLUTIONS, "questions_path": QUESTIONS, "aliases": ["gpt-4"]},
     "--alias expects NAME=VALUE, got 'gpt-4'"),
    ({"solutions_path": SOLUTIONS, "questions_path": QUESTIONS, "per_model": ["error_rate=1"]},
     "--per-model expects NAME.KNOB=VALUE"),
])
def test_a_malformed_option_is_a_user_error_naming_it(given, message):
    with pytest.raises(UserError, match=re.escape(message)):
        cli.build_config(None, given)


def test_bad_values_exit_2_with_the_models_message_and_no_traceback():
    result = CliRunner().invoke(magdi_app, ["teachers", "serve", "--solutions", str(SOLUTIONS), "--questions",
                                            str(QUESTIONS), "--error-rate", "2"])
    assert result.exit_code == 2 and "error_rate" in result.output and "less than or equal to 1" in result.output
    assert "Usage: magdi teachers serve" in result.output
    assert "Traceback" not in result.output


def test_without_the_package_magdi_teachers_serve_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "services.teachers"
                        else real(name, *a))
    result = CliRunner().invoke(magdi_app, ["teachers", "serve", "--port", "1"])
    assert result.exit_code == 2 and ".[teachers]" in result.output


def test_without_the_services_package_magdi_teachers_serve_still_says_how_to_install_it(monkeypatch):
    """The trainer image has no `services` at all: find_spec raises for the parent, not None."""
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *a):
        if name == "services.teachers":
            raise ModuleNotFoundError("No module named 'services'", name="services")
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    result = CliRunner().invoke(magdi_app, ["teachers", "serve", "--port", "1"])
    assert result.exit_code == 2 and ".[teachers]" in result.output


def test_magdi_teachers_serve_runs_the_panel_with_per_model_faults(tmp_path: Path):
    """The real command in a subprocess: an alias with --per-model faults fails, its recorded model answers."""
    port = free_port()
    log = tmp_path / "panel.log"
    cmd = [str(Path(sys.executable).parent / "magdi"), "teachers", "serve", "--port", str(port), "--log-level",
           "warning", "--solutions", str(SOLUTIONS), "--questions", str(QUESTIONS), "--model", "175b_verification",
           "--alias", "flaky=175b_verification", "--per-model", "flaky.error_rate=1", "--seed", "3"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                models = httpx.get(f"{base}/models", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert {m["id"] for m in models["data"]} == {"175b_verification", "flaky"}
        question = QUESTIONS.read_text().splitlines()[0]
        body = {"messages": [{"role": "user", "content": json.loads(question)["question"]}]}
        healthy = httpx.post(f"{base}/chat/completions", json={**body, "model": "175b_verification"}, timeout=10)
        flaky = httpx.post(f"{base}/chat/completions", json={**body, "model": "flaky"}, timeout=10)
        assert healthy.status_code == 200 and healthy.headers["x-magdi-simulated"] == "true"
        assert flaky.status_code >= 500
        assert "SIMULATED" in log.read_text()
    finally:
        stop_process(proc)
