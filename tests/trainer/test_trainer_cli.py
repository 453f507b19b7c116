"""`magdi train` / `magdi eval` as registered commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from trainer.cli import register

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "trainer" / "tiny-cpu.yaml"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_module_imports_only_typer_and_the_stdlib() -> None:
    code = "import sys, trainer.cli; print(sorted(m for m in ('torch', 'transformers', 'peft', 'neo4j', 'magdi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _train_args(source: Path, out: Path, *overrides: str) -> list[str]:
    sets = [f"data.source=jsonl:{source}", f"run.output_dir={out}", "run.progress=false",
            "data.split_fractions=[1.0, 0.0, 0.0]", *overrides]
    return ["train", "--config", str(RECIPE), *[arg for s in sets for arg in ("--set", s)]]


def test_train_command_with_a_recipe_and_overrides(app, tmp_path, synth, write_jsonl) -> None:
    path = write_jsonl([synth(i) for i in range(6)])
    outcome = CliRunner().invoke(app, _train_args(path, tmp_path / "run", "optim.max_steps=2", "lora.r=4"))
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output[outcome.output.index("{"):])
    assert report["steps"] == 2 and Path(report["adapter"], "adapter_config.json").is_file()


def test_printed_summary_is_train_summary_json_with_truncation_counted(app, tmp_path, synth, write_jsonl) -> None:
    from magdi.prompts import REFERENCE
    from trainer.graphs import GraphSpec, MAGEncoder
    from trainer.model import load_tokenizer

    debates = [synth(i) for i in range(6)]
    outcome = CliRunner().invoke(app, _train_args(write_jsonl(debates), tmp_path / "run", "optim.max_steps=1",
                                                  "data.max_length=40"))
    assert outcome.exit_code == 0, outcome.output
    printed = json.loads(outcome.output[outcome.output.index("{"):])
    saved = json.loads(Path(printed["summary_file"]).read_text())
    assert {k: printed[k] for k in saved} == saved
    # counted independently: every node the trainer encodes at this length
    encoder = MAGEncoder(load_tokenizer(str(tmp_path / "run" / "base")), GraphSpec(max_length=40, prompt_format=REFERENCE))
    for d in debates:
        encoder.encode(d)
    assert saved["data"]["nodes_truncated"] == encoder.stats.nodes_truncated > 0


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--config", str(RECIPE), "--set", "optim.lrr=1"], "optim.lrr"),
    (["train", "--config", "/nonexistent.yaml"], "no such config file"),
    (["eval", "--adapter", "x", "--k", "3"], "self-consistency needs sampling"),
    (["eval", "--adapter", "x", "--data", "f.jsonl", "--format", "gsm8k", "--split", "test"], "not both"),
    (["eval", "--adapter", "x", "--split", "train"], "val or test"),
    (["eval", "--adapter", "/nonexistent", "--no-neo4j"], "not a trainer artefact"),
])
def test_user_errors_exit_2_with_a_message(app, args: list[str], message: str) -> None:
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 2 and message in outcome.output, outcome.output


def test_eval_compares_with_the_base_on_the_same_questions_and_warns_when_n_is_small(app, trained_run,
                                                                                       tmp_path) -> None:
    cfg, result, _ = trained_run
    moved = tmp_path / "moved-run"
    shutil.copytree(result.output_dir, moved)  # a run directory somewhere else still evaluates
    outcome = CliRunner().invoke(app, ["eval", "--adapter", str(moved / "adapter"), "--split", "test",
                                       "--max-new-tokens", "6", "--compare-base", "--no-neo4j"])
    assert outcome.exit_code == 0, outcome.output
    assert "only" in outcome.output and "95% interval" in outcome.output  # n is tiny: said so
    assert "generate (student)" in outcome.output and "generate (base)" in outcome.output  # progress bars
    saved = json.loads((moved / "eval.json").read_text())
    assert [i["question_id"] for i in saved["base"]["items"]] == [i["question_id"] for i in saved["items"]]
    low, high = saved["accuracy_ci95"]
    assert 0.0 <= low <= saved["accuracy"] <= high <= 1.0 and high - low > 0.2
    like = saved["likelihood"]
    assert like["student"]["pairs"] == like["base"]["pairs"] > 0
    assert like["student"]["nll_per_token"] != like["base"]["nll_per_token"]  # the adapter changed something
    card = (moved / "adapter" / "README.md").read_text()
    assert f"n = {saved['n']} questions" in card and "Base model without the adapter" in card
