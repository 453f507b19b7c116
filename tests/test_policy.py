"""The operator's policy (`magdi.policy`): declared endpoints, binding panels, egress, the data root, caps."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from magdi.panel import PanelError, parse_panel
from magdi.policy import (
    DATA_PATH_REFUSED,
    DataPathError,
    EgressError,
    Endpoint,
    OperatorPolicy,
    PolicyError,
    Who,
)

OPENAI = {"name": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
          "models": ["gpt-4o-mini"], "max_tokens": 512, "limits": {"rpm": 500}, "price": {"input_per_1k": 0.15}}
LOCAL = {"name": "sim", "base_url": "http://127.0.0.1:8901/v1", "models": ["sim-a"]}


def policy(**kw: object) -> OperatorPolicy:
    return OperatorPolicy(**{"endpoints": [OPENAI, LOCAL], **kw})


def panel(*agents: dict[str, object]):
    return parse_panel({"agents": list(agents)})


def problems(exc: PolicyError) -> dict[str, str]:
    return {".".join(str(p) for p in loc): msg for loc, msg in exc.problems}


def test_an_api_caller_picks_endpoints_by_name_and_gets_the_operators_settings() -> None:
    bound = policy().bind(panel({"name": "a", "endpoint": "openai", "model": "gpt-4o-mini", "temperature": 0.2}),
                          Who.CALLER)
    (agent,) = bound.agents
    assert (agent.base_url, agent.api_key_env, agent.limits.rpm, agent.price.input_per_1k) == (
        "https://api.openai.com/v1", "OPENAI_API_KEY", 500, 0.15)
    assert agent.max_tokens == 512 and agent.temperature == 0.2
    assert agent.as_agent().endpoint == "openai", "the graph names the endpoint, not its URL"


def test_an_api_caller_can_name_no_url_no_key_variable_and_no_operator_setting() -> None:
    with pytest.raises(PolicyError) as err:
        policy().bind(panel(
            {"name": "a", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "OPENAI_API_KEY"},
            {"name": "b", "endpoint": "openai", "model": "gpt-4o-mini", "price": {"input_per_1k": 0}, "max_tokens": 513},
            {"name": "c", "endpoint": "nope", "model": "x"},
            {"name": "d", "endpoint": "sim", "model": "gpt-4o-mini"},
        ), Who.CALLER)
    found = problems(err.value)
    assert set(found) == {"panel.agents.0.base_url", "panel.agents.0.api_key_env", "panel.agents.1.price",
                          "panel.agents.1.max_tokens", "panel.agents.2.endpoint", "panel.agents.3.model"}, found
    assert "this server offers: openai, sim" in found["panel.agents.2.endpoint"]


def test_magdi_variables_are_never_key_variables() -> None:
    for name in ("MAGDI_NEO4J_PASSWORD", "MAGDI_API_TOKEN", "magdi_api_token"):
        with pytest.raises(PanelError, match="MAGDI_"):
            parse_panel({"agents": [{"name": "a", "model": "m", "base_url": "https://x.example/v1",
                                     "api_key_env": name}]})
        with pytest.raises(ValueError, match="MAGDI_"):
            Endpoint(name="e", base_url="https://x.example/v1", api_key_env=name, models=["m"])


def test_a_seat_on_a_declared_endpoint_cannot_also_carry_a_url() -> None:
    with pytest.raises(PanelError, match="takes base_url and api_key_env from the operator"):
        parse_panel({"agents": [{"name": "a", "endpoint": "openai", "model": "m", "base_url": "http://evil/v1"}]})
    with pytest.raises(PanelError, match="name a declared endpoint"):
        parse_panel({"agents": [{"name": "a", "model": "m"}]})


def test_the_worker_rebinds_inline_seats_to_its_own_declarations() -> None:
    inline = panel({"name": "a", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1",
                    "api_key_env": "OPENAI_API_KEY", "price": {"input_per_1k": 0}, "limits": {"rpm": 99999}})
    (agent,) = policy().bind(inline, Who.WORKER).agents
    assert agent.price.input_per_1k == 0.15 and agent.limits.rpm == 500, "the operator's prices and quotas win"
    forged = panel({"name": "a", "model": "gpt-4o-mini", "base_url": "https://evil.example/v1",
                    "api_key_env": "OPENAI_API_KEY"})
    with pytest.raises(PolicyError, match="not an endpoint declared"):
        policy().bind(forged, Who.WORKER)
    other_key = panel({"name": "a", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1",
                       "api_key_env": "AWS_SECRET_ACCESS_KEY"})
    with pytest.raises(PolicyError, match="not an endpoint declared"):
        policy().bind(other_key, Who.WORKER)
    assert policy().bind(forged, Who.OPERATOR).agents[0].base_url == "https://evil.example/v1", \
        "magdi generate (the operator) keeps inline endpoints"


def test_caps() -> None:
    tight = policy(job_max_agents=1, job_max_tokens=100, job_max_questions=10, job_max_rounds=2)
    two = panel({"name": "a", "endpoint": "sim", "model": "sim-a"}, {"name": "b", "endpoint": "sim", "model": "sim-a"})
    with pytest.raises(PolicyError, match="at most 1 agents"):
        tight.bind(two, Who.CALLER)
    assert tight.bind(two, Who.OPERATOR).agents[0].max_tokens == 1024, "the CLI is not capped"
    one = panel({"name": "a", "endpoint": "sim", "model": "sim-a"})
    assert tight.bind(one, Who.CALLER).agents[0].max_tokens == 100
    with pytest.raises(PolicyError) as err:
        tight.check_caps(questions=11, max_rounds=3)
    assert set(problems(err.value)) == {"limit", "protocol.max_rounds"}


def test_endpoints_come_from_a_file_and_the_environment(tmp_path, monkeypatch) -> None:
    file = tmp_path / "endpoints.yaml"
    file.write_text(yaml.safe_dump({"endpoints": [OPENAI], "egress_allow": ["teachers"]}))
    monkeypatch.setenv("MAGDI_ENDPOINTS_FILE", str(file))
    monkeypatch.setenv("MAGDI_ENDPOINTS", json.dumps([LOCAL]))
    monkeypatch.setenv("MAGDI_EGRESS_ALLOW", "127.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("MAGDI_DATA_ROOT", str(tmp_path))
    loaded = OperatorPolicy()
    assert [e.name for e in loaded.endpoints] == ["openai", "sim"]
    assert loaded.egress_allow == ["teachers", "127.0.0.1", "10.0.0.0/8"] and loaded.data_root == tmp_path
    monkeypatch.setenv("MAGDI_ENDPOINTS", json.dumps([OPENAI]))
    with pytest.raises(ValueError, match="declared twice: openai"):
        OperatorPolicy()
    file.write_text(yaml.safe_dump({"endpoints": [{**OPENAI, "rpm": 5}]}))
    monkeypatch.delenv("MAGDI_ENDPOINTS")
    with pytest.raises(ValueError, match="rpm"):
        OperatorPolicy()


@pytest.mark.parametrize(("url", "allow", "refused"), [
    ("http://127.0.0.1:8901/v1", [], "loopback"),
    ("http://localhost:8901/v1", [], "loopback"),
    ("http://169.254.169.254/latest", [], "link-local"),
    ("http://10.1.2.3:8000/v1", [], "private"),
    ("http://[::1]:8000/v1", [], "loopback"),
    ("http://[::ffff:127.0.0.1]:8000/v1", [], "loopback"),
    ("http://0.0.0.0:8000/v1", [], "unspecified"),
    ("http://127.0.0.1:8901/v1", ["127.0.0.1"], None),
    ("http://localhost:8901/v1", ["localhost"], None),
    ("http://10.1.2.3:8000/v1", ["10.0.0.0/8"], None),
    ("http://10.1.2.3:8000/v1", ["10.0.0.0/16"], "private"),
    ("http://8.8.8.8/v1", [], None),
    ("http://no-such-host.invalid/v1", [], "does not resolve"),
])
def test_egress_refuses_non_public_addresses_unless_allow_listed(url, allow, refused) -> None:
    rules = OperatorPolicy(egress_allow=allow)
    agents = panel({"name": "a", "model": "m", "base_url": url})
    if refused is None:
        rules.check_egress(agents)
        return
    with pytest.raises(EgressError, match=refused):
        rules.check_egress(agents)


def test_data_paths_stay_under_the_root_through_symlinks(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "math").mkdir(parents=True)
    outside.mkdir()
    (root / "gsm8k.jsonl").write_text("{}\n")
    (outside / "secret.json").write_text("{}")
    (root / "link.jsonl").symlink_to(outside / "secret.json")
    (root / "math" / "ok.json").write_text("{}")
    rules = OperatorPolicy(data_root=root)
    assert rules.confine("gsm8k.jsonl") == root / "gsm8k.jsonl"
    assert rules.confine(str(root / "gsm8k.jsonl")) == root / "gsm8k.jsonl"
    assert rules.stored_path(rules.confine(str(root / "math"))) == "math"
    for path in ("link.jsonl", str(outside / "secret.json"), "../outside/secret.json", "/", "missing.jsonl",
                 "gsm8k.jsonl\x00"):
        with pytest.raises(DataPathError, match=DATA_PATH_REFUSED):
            rules.confine(path)
    (root / "math" / "escape.json").symlink_to(outside / "secret.json")  # a folder is walked: one bad file refuses it
    with pytest.raises(DataPathError):
        rules.confine("math")
    with pytest.raises(DataPathError, match="MAGDI_DATA_ROOT"):
        OperatorPolicy().confine("gsm8k.jsonl")
    assert os.path.realpath(root) == str(root.resolve())
