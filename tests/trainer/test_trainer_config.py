"""The typed config: paper defaults, YAML/env/--set precedence, rejected keys, commented recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig, load_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "trainer").glob("*.yaml"))


def test_defaults_are_the_papers() -> None:
    cfg = TrainConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (16, 32, 0.05, ["q_proj", "v_proj"])
    assert (cfg.loss.alpha, cfg.loss.beta, cfg.loss.gamma, cfg.loss.margin) == (1.0, 1.0, 0.1, 1.0)
    assert (cfg.loss.gcn_hidden, cfg.loss.gcn_dropout, cfg.loss.num_classes) == (512, 0.5, 3)
    assert cfg.objective == "magdi" and cfg.mode == "end_to_end"
    assert cfg.loss.mask_prompt is False and cfg.data.remove_agreement is True
    assert cfg.optim.lr == 5e-6 and cfg.optim.head_lr != cfg.optim.lr  # docs/method.md D13: separate head LR


def test_yaml_then_env_then_set(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\n  epochs: 2\nloss:\n  use_gcn: true\n")
    assert load_config(path, env={}).optim.lr == 1e-3
    env = {"MAGDI_TRAIN_OPTIM__LR": "2e-3", "MAGDI_TRAIN_LOSS__USE_GCN": "false", "OTHER": "x"}
    cfg = load_config(path, env=env)
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.loss.use_gcn) == (2e-3, 2, False)
    cfg = load_config(path, ["optim.lr=3e-3", "data.source=jsonl:/tmp/x.jsonl", "lora.target_modules=q_proj,o_proj"], env=env)
    assert cfg.optim.lr == 3e-3 and cfg.data.jsonl_path == Path("/tmp/x.jsonl")
    assert cfg.lora.target_modules == ["q_proj", "o_proj"]


def test_a_field_unique_to_one_section_may_be_named_alone() -> None:
    from trainer.config import env_overrides_known

    cfg = load_config(None, ["lr=1e-4"], env={"MAGDI_TRAIN_DATASET": "gsm8k"})
    assert cfg.optim.lr == 1e-4 and cfg.data.dataset == "gsm8k"
    with pytest.raises(ConfigError, match="lora.alpha or loss.alpha"):
        load_config(None, ["alpha=2"], env={})
    known = env_overrides_known()
    assert {"MAGDI_TRAIN_DATASET", "MAGDI_TRAIN_DATA__DATASET", "MAGDI_TRAIN_OBJECTIVE", "MAGDI_TRAIN_LOSS__ALPHA"} <= known
    assert "MAGDI_TRAIN_ALPHA" not in known and "MAGDI_TRAIN_DATA" not in known


@pytest.mark.parametrize(("text", "key"), [
    ("optim:\n  lrr: 1\n", "optim.lrr"),
    ("bogus: 1\n", "bogus"),
    ("data:\n  sorce: neo4j\n", "data.sorce"),
])
def test_unknown_yaml_key_is_rejected_by_name(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(repr(key))):
        load_config(path, env={})


def test_unknown_env_and_set_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="optim.lrate"):
        load_config(None, env={"MAGDI_TRAIN_OPTIM__LRATE": "1"})
    with pytest.raises(ConfigError, match="loss.delta"):
        load_config(None, ["loss.delta=1"], env={})
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"], env={})


@pytest.mark.parametrize(("override", "key"), [
    ("lora.r=0", "lora.r"), ("loss.gamma=-1", "loss.gamma"), ("optim.batch_size=0", "optim.batch_size"),
    ("data.split_fractions=[0.5, 0.1, 0.1]", "data.split_fractions"), ("data.source=csv:x", "data.source"),
    ("objective=dpo", "objective"), ("mode=fast", "mode"), ("optim.epochs=two", "optim.epochs"),
    ("loss.use_gcn=maybe", "loss.use_gcn"), ("loss.num_classes=4", "loss.num_classes"),
])
def test_bad_values_name_the_field(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(None, [override], env={})


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_are_complete_and_every_key_is_commented(recipe: Path) -> None:
    cfg = load_config(recipe, env={})
    lines = recipe.read_text().splitlines()
    keys = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([a-z_0-9]+):", line)
        if not match:
            continue
        keys.append(match.group(2))
        section = line.rstrip().endswith(":")
        previous = lines[i - 1].strip() if i else ""
        assert section or "#" in line or previous.startswith("#"), f"{recipe.name}:{i + 1} {line.strip()!r} has no comment"
    expected = list(TrainConfig.model_fields)
    for section in ("model", "lora", "loss", "optim", "data", "run"):
        expected += list(type(getattr(cfg, section)).model_fields)
    assert sorted(keys) == sorted(expected)  # every option documented in every recipe


def test_paper_recipe_matches_the_reference_hyper_parameters() -> None:
    cfg = load_config(next(p for p in RECIPES if p.name == "mistral-7b-magdi.yaml"), env={})
    assert cfg.model.base == "mistralai/Mistral-7B-Instruct-v0.2"
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.grad_accum, cfg.optim.warmup_steps) == (5e-6, 10, 4, 100)
    assert cfg.model.gradient_checkpointing and cfg.run.seed == 42
    assert (cfg.loss.alpha, cfg.loss.beta, cfg.loss.gamma) == (1.0, 1.0, 0.1)


def test_precision_auto_is_fp32_on_cpu_and_fp16_needs_cuda() -> None:
    import torch

    from trainer.model import precision_plan

    assert precision_plan("auto", torch.device("cpu")).load_dtype == torch.float32
    with pytest.raises(ConfigError, match="model.precision"):
        precision_plan("fp16", torch.device("cpu"))
