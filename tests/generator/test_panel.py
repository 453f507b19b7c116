"""Panel config validation and key handling: every problem is reported before any call."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import yaml

from magdi.panel import PanelError, load_panel, parse_panel, resolve_keys
from magdi.redact import REDACTED, install

REPO = Path(__file__).resolve().parents[2]
REMOTE = "https://api.example.com/v1"


def agent(name: str, **kw: object) -> dict[str, object]:
    return {"name": name, "model": "m", "base_url": REMOTE, "api_key_env": "EXAMPLE_KEY", **kw}


def test_example_panels_are_valid_and_fully_commented() -> None:
    """Every key name used in an example panel is explained by a comment on at least one of its lines."""
    files = sorted((REPO / "configs" / "panels").glob("*.yaml"))
    assert {f.name for f in files} >= {"simulated.yaml", "openai.yaml", "vllm.yaml", "ollama.yaml"}
    for f in files:
        panel = load_panel(f)
        assert len(panel.agents) == 3
        commented: dict[str, bool] = {}
        for line in f.read_text().splitlines():
            body = line.split("#", 1)[0].strip().lstrip("- ")
            for key in re.findall(r"(?:^|[{,]\s*)([A-Za-z_]\w*):", body):
                commented[key] = commented.get(key, False) or "#" in line
        missing = sorted(k for k, ok in commented.items() if not ok)
        assert not missing, f"{f.name}: keys without a comment: {missing}"


def test_simulated_panel_uses_three_recorded_models() -> None:
    from services.teachers import RECORDED_MODELS

    panel = load_panel(REPO / "configs" / "panels" / "simulated.yaml")
    assert all(a.model in RECORDED_MODELS for a in panel.agents) and all(a.is_local for a in panel.agents)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"agents": [agent("a"), agent("a")]}, "duplicate agent names: a"),
        ({"agents": [agent("a", temprature=0.5)]}, "agent 'a': temprature: unknown key"),
        ({"agents": [agent("a", limits={"rpm": 10, "burst": 3})]}, "limits.burst: unknown key"),
        ({"agents": [agent("a", base_url="ftp://x")]}, r"not an http\(s\) URL"),
        ({"agents": [agent("a", base_url="https://u:p@api.example.com/v1")]}, "credentials do not belong"),
        ({"agents": [agent("a", limits={"rpm": 10}), agent("b", limits={"rpm": 20})]}, "share an endpoint"),
        ({"agents": []}, "agents"),
        ({"agents": [agent("bad name")]}, "name"),
        ({"agents": [agent("a")], "defaults": {"name": "x"}}, "must be set per agent"),
    ],
)
def test_bad_panels_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(PanelError, match=message):
        parse_panel(data)


def test_defaults_merge_under_agents() -> None:
    panel = parse_panel({"defaults": {"base_url": REMOTE, "limits": {"rpm": 5}, "timeout_s": 7},
                         "agents": [{"name": "a", "model": "m1", "limits": {"max_in_flight": 2}},
                                    {"name": "b", "model": "m2", "timeout_s": 9}]})
    a, b = panel.agents
    assert (a.limits.rpm, a.limits.max_in_flight, a.timeout_s) == (5, 2, 7)
    assert (b.limits.rpm, b.timeout_s) == (5, 9)


def test_missing_keys_are_listed_and_local_endpoints_need_none() -> None:
    panel = parse_panel({"agents": [agent("a"), agent("b", api_key_env="OTHER_KEY"),
                                    agent("local", base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_KEY"),
                                    agent("nokey", base_url="http://localhost:1/v1", api_key_env=None)]})
    with pytest.raises(PanelError) as err:
        resolve_keys(panel, {})
    assert "EXAMPLE_KEY" in str(err.value) and "OTHER_KEY" in str(err.value) and "VLLM_KEY" not in str(err.value)
    keys = resolve_keys(panel, {"EXAMPLE_KEY": "sk-aaaaaaaa", "OTHER_KEY": "sk-bbbbbbbb"})
    assert keys["a"] == "sk-aaaaaaaa" and keys["local"] == "EMPTY" and keys["nokey"] == "EMPTY"


def test_the_key_never_enters_the_spec_or_the_logs(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    panel = parse_panel({"agents": [agent("a")]})
    keys = resolve_keys(panel, {"EXAMPLE_KEY": secret})
    assert secret not in yaml.safe_dump(panel.public_dict()) and keys["a"] == secret
    log = logging.getLogger("test.redact")
    handler = logging.FileHandler(tmp_path / "log.txt")
    log.addHandler(handler)
    log.propagate = False
    try:
        install([secret], log)
        log.warning("calling with %s", secret)
        log.warning("headers {'Authorization': 'Bearer %s'}", "sk-other-unknown-123456")
        try:
            raise RuntimeError(f"boom {secret}")
        except RuntimeError:
            log.exception("failed")
    finally:
        handler.close()
        log.removeHandler(handler)
    text = (tmp_path / "log.txt").read_text()
    assert secret not in text and "sk-other-unknown" not in text and text.count(REDACTED) >= 3


def test_a_panel_is_stored_as_written_and_its_identity_survives_a_round_trip() -> None:
    """Inline seats keep the keys they always had (so existing jobs keep their config hash); seats on a
    declared endpoint are stored as the seat chose them, without the operator's part."""
    from magdi.mag import JobSpec

    inline = parse_panel({"agents": [agent("a")]})
    assert set(inline.model_dump()["agents"][0]) == {
        "name", "model", "base_url", "api_key_env", "temperature", "max_tokens", "timeout_s", "max_retries",
        "backoff", "breaker", "limits", "price", "demos", "preflight"}
    bound = parse_panel({"defaults": {"endpoint": "openai"},
                         "agents": [{"name": "a", "model": "m", "max_tokens": 64}, {"name": "b", "model": "m"}]})
    assert bound.model_dump()["agents"] == [{"name": "a", "model": "m", "endpoint": "openai", "max_tokens": 64},
                                            {"name": "b", "model": "m", "endpoint": "openai"}]
    for panel in (inline, bound):
        spec = JobSpec(name="j", dataset="gsm8k", data_path="x.jsonl", panel=panel)
        again = JobSpec.model_validate_json(spec.model_dump_json())
        assert again.config_hash == spec.config_hash and again.panel == panel


def test_fields_added_to_a_panel_later_leave_the_hash_of_a_stored_job_unchanged() -> None:
    """A job created before `batch_limits`, the batch prices and `limits.window_s` existed resumes only
    if its config hash is still the one stored with it. The literals are what earlier versions
    computed for these specs (checked out and run at 969be17, before `window_s`)."""
    from magdi.mag import JobSpec

    panel = {"agents": [{"name": "a", "model": "m", "base_url": "http://h/v1"}]}
    assert JobSpec(name="x", dataset="gsm8k", data_path="a.jsonl", panel=panel).config_hash == "61ea0f47dba30955"
    batch = JobSpec(name="x", dataset="gsm8k", data_path="a.jsonl", panel=panel, mode="batch")
    assert batch.config_hash == "5045edb819b8acd3"
    seat = parse_panel(panel).model_dump()["agents"][0]
    assert set(seat["limits"]) == {"rpm", "tpm", "max_in_flight"} and set(seat["price"]) == {"input_per_1k",
                                                                                             "output_per_1k"}
    # set to anything but the default, a later field is part of the job like any other
    told = {"agents": [{**panel["agents"][0], "limits": {"window_s": 1}}]}
    assert JobSpec(name="x", dataset="gsm8k", data_path="a.jsonl", panel=told).config_hash != "61ea0f47dba30955"


def test_a_panel_file_may_seat_agents_on_declared_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "panel.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"endpoint": "openai", "temperature": 0.7},
                                    "agents": [{"name": "a", "model": "gpt-4o-mini"}]}))
    panel = load_panel(path)
    assert panel.agents[0].endpoint == "openai" and panel.agents[0].base_url is None
    with pytest.raises(PanelError, match="MAGDI_"):
        parse_panel({"agents": [agent("a", api_key_env="MAGDI_NEO4J_PASSWORD")]})
