"""One configuration mechanism: the trainer's recipes, panel files, the operator's endpoints file and
the services' environment all read through magdi.config_loading, with the same typing and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from magdi.config_loading import ConfigError, load_settings
from magdi.errors import UserError
from magdi.panel import PanelError, load_panel
from magdi.policy import OperatorPolicy
from services.api.settings import ApiSettings
from services.generator.settings import GeneratorSettings
from trainer.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_a_typo_in_a_recipe_names_the_full_key_and_the_one_meant(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("optim:\n  lr: 1.0e-4\n  warmup_step: 10\nlora:\n  r: 4\n")
    with pytest.raises(ConfigError, match=r"'optim.warmup_step': unknown key; did you mean 'optim.warmup_steps'\?"):
        load_config(path, env={})


def test_text_values_are_typed_by_the_field_they_set() -> None:
    cfg = load_config(None, ["lora.target_modules=q_proj,o_proj", "data.agents=[alice, bob]", "optim.lr=1e-4",
                             "optim.max_steps=none", "data.split_salt=2024", "loss.use_gcn=off"],
                      env={"MAGDI_TRAIN_DATA__MAX_ROUNDS": "2", "MAGDI_TRAIN_JOB_ID": "null"})
    assert cfg.lora.target_modules == ["q_proj", "o_proj"] and cfg.data.agents == ["alice", "bob"]
    assert cfg.optim.lr == 1e-4 and cfg.optim.max_steps is None and cfg.data.split_salt == "2024"
    assert cfg.loss.use_gcn is False and cfg.data.max_rounds == 2 and cfg.data.job_id is None
    with pytest.raises(ConfigError, match="optim.max_steps") as info:
        load_config(None, ["optim.max_steps=0", "loss.margin=-1"], env={})
    assert "loss.margin" in str(info.value)  # every problem, not only the first
    with pytest.raises(ConfigError, match=r"environment MAGDI_TRAIN_OPTIM__LRATE: unknown key 'optim.lrate'; "
                                          r"did you mean 'optim.lr'\?"):
        load_config(None, env={"MAGDI_TRAIN_OPTIM__LRATE": "1"})


def test_every_shipped_panel_and_recipe_loads() -> None:
    panels = sorted((REPO / "configs" / "panels").glob("*.yaml"))
    recipes = sorted((REPO / "configs" / "trainer").glob("*.yaml"))
    assert panels and recipes
    for path in panels:
        assert load_panel(path).agents
    for path in recipes:
        assert load_config(path, env={}).run.output_dir


def test_a_panel_typo_is_refused_with_the_key_meant(tmp_path: Path) -> None:
    path = tmp_path / "panel.yaml"
    path.write_text("agents:\n  - name: a\n    model: m\n    base_url: http://localhost:9/v1\n    temprature: 0.5\n")
    with pytest.raises(PanelError, match=r"agent 'a': temprature: unknown key; did you mean 'agents.0.temperature'\?"):
        load_panel(path)
    path.write_text("- just a list\n")
    with pytest.raises(PanelError, match="must be a mapping"):
        load_panel(path)


def test_the_endpoints_file_refuses_unknown_keys_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text("endpoint:\n  - name: x\n")
    with pytest.raises(ValidationError, match=r"unknown key 'endpoint'; did you mean 'endpoints'\?"):
        OperatorPolicy(endpoints_file=path)
    with pytest.raises(ValidationError, match="no such endpoints file"):
        OperatorPolicy(endpoints_file=tmp_path / "missing.yaml")


def test_service_settings_name_the_variable_and_refuse_unknown_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGDI_API_MAX_PAGE_LIMT", "100")
    with pytest.raises(ConfigError, match=r"MAGDI_API_MAX_PAGE_LIMT: unknown setting; did you mean "
                                          r"'MAGDI_API_MAX_PAGE_LIMIT'\?"):
        load_settings(ApiSettings)
    monkeypatch.delenv("MAGDI_API_MAX_PAGE_LIMT")
    monkeypatch.setenv("MAGDI_API_MAX_PAGE_LIMIT", "many")
    with pytest.raises(UserError, match="MAGDI_API_MAX_PAGE_LIMIT: Input should be a valid integer"):
        load_settings(ApiSettings)
    monkeypatch.setenv("MAGDI_API_MAX_PAGE_LIMIT", "100")
    assert load_settings(ApiSettings).max_page_limit == 100
    monkeypatch.setenv("MAGDI_GENERATOR_CONCURRENCY", "3")
    assert load_settings(GeneratorSettings, once=True).concurrency == 3
