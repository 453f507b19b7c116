"""docker-compose.yml must be right for real users, though no Docker engine runs here.

Parse it and check every build context, Dockerfile, COPY source, command, config path, env var and
port it names against the code; then run it through a real Compose implementation (podman-compose)
with only the variables each documented command sets.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import compose_helpers
import pytest
import yaml
from compose_helpers import compose_config
from typer.testing import CliRunner

from magdi.cli import app
from magdi.store.server import NEO4J_VERSION

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
BUILT = {name: svc for name, svc in SERVICES.items() if "build" in svc}


def dockerfile(svc: dict) -> Path:
    return REPO / svc["build"]["context"] / svc["build"]["dockerfile"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def as_argv(value: str | list[str]) -> list[str]:
    if isinstance(value, list):
        return value
    value = value.strip()
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def known_env_vars() -> set[str]:
    """Every environment variable our settings classes read."""
    from pydantic_settings import BaseSettings

    from magdi.policy import OperatorPolicy
    from magdi.settings import Neo4jSettings
    from services.api.settings import ApiSettings
    from services.generator.settings import GeneratorSettings

    names: set[str] = set()
    cls: type[BaseSettings]
    for cls in (Neo4jSettings, ApiSettings, GeneratorSettings, OperatorPolicy):
        prefix = cls.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    from trainer.config import env_overrides_known

    names |= env_overrides_known()
    return names


def test_neo4j_image_is_the_version_the_project_runs_itself():
    image = SERVICES["neo4j"]["image"]
    major_minor = ".".join(NEO4J_VERSION.split(".")[:2])
    assert re.fullmatch(rf"neo4j:{re.escape(major_minor)}(\.\d+)?-community", image), image
    assert SERVICES["neo4j"]["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(BUILT))
def test_build_context_dockerfile_and_copy_sources_exist(name):
    svc = BUILT[name]
    context = REPO / svc["build"]["context"]
    assert context.is_dir()
    path = dockerfile(svc)
    assert path.is_file(), f"{name}: {path} missing"
    for word, args in instructions(path):
        if word in ("COPY", "ADD") and "--from" not in args:
            *sources, _dest = [a for a in as_argv(args) if not a.startswith("--")]
            for src in sources:
                assert list(context.glob(src)), f"{name}: {path.name} copies {src!r}, which does not exist"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_commands_exist_in_the_cli(name):
    svc = SERVICES[name]
    argv = as_argv(svc["command"]) if "command" in svc else None
    if argv is None and name in BUILT:
        cmds = [args for word, args in instructions(dockerfile(svc)) if word in ("CMD", "ENTRYPOINT")]
        argv = as_argv(cmds[-1]) if cmds else None
    if not argv:
        return
    if argv[0] == "magdi":
        words = [a for a in argv[1:] if not a.startswith("-")][:2]
        sub = words[:1] if words[0] not in ("db", "teachers") else words
        result = CliRunner().invoke(app, [*sub, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
        assert result.exit_code == 0, f"{name}: `magdi {' '.join(sub)}` is not a command: {result.output}"
        for flag in (a.split("=")[0] for a in argv if a.startswith("--")):
            assert flag in result.output, f"{name}: `magdi {' '.join(sub)}` has no option {flag}"
    elif argv[:3] == ["python", "-m", "services.teachers"]:
        from services.teachers.cli import app as teachers_app

        result = CliRunner().invoke(teachers_app, ["--help"], env={"COLUMNS": "200", "TERM": "dumb"})
        assert result.exit_code == 0, result.output
        for flag in (a.split("=")[0] for a in argv if a.startswith("--")):
            assert flag in result.output, f"{name}: `python -m services.teachers` has no option {flag}"
        for a in argv:
            if a.startswith("/app/configs/"):
                assert (REPO / a.removeprefix("/app/")).is_file(), f"{name}: {a} not in the repo"
    elif argv[:2] == ["python", "-m"] or argv[:2] == ["uvicorn"]:
        module = argv[2] if argv[0] == "python" else argv[1].split(":")[0]
        assert (REPO / module.replace(".", "/")).exists() or (REPO / (module.replace(".", "/") + ".py")).exists()


def test_every_env_var_is_read_by_the_code():
    known = known_env_vars()
    for name, svc in SERVICES.items():
        for var in svc.get("environment") or {}:
            if var.startswith("MAGDI_"):
                assert var in known, f"{name}: {var} is not read by any settings class"


def test_ports_match_what_the_services_listen_on():
    def container_ports(svc):
        return {int(p.split(":")[-1]) for p in svc.get("ports", [])}

    assert container_ports(SERVICES["neo4j"]) == {7474, 7687}
    assert COMPOSE["x-neo4j-env"]["MAGDI_NEO4J_URI"] == "bolt://neo4j:7687"
    api_cmd = " ".join(args for word, args in instructions(dockerfile(SERVICES["api"])) if word in ("CMD", "EXPOSE"))
    (api_port,) = container_ports(SERVICES["api"])
    assert str(api_port) in api_cmd
    teachers = as_argv(SERVICES["teachers"]["command"])
    assert container_ports(SERVICES["teachers"]) == {int(teachers[teachers.index("--port") + 1])}


def test_dependants_wait_for_a_healthy_neo4j():
    for name, svc in SERVICES.items():
        if "MAGDI_NEO4J_URI" in (svc.get("environment") or {}):
            assert svc["depends_on"]["neo4j"]["condition"] == "service_healthy", name


def test_trainer_reserves_a_gpu():
    devices = SERVICES["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)


def mounts(svc: dict) -> dict[str, tuple[str, str]]:
    """Container path -> (host source with `${VAR:-default}` taken at its default, mode)."""
    out = {}
    for volume in svc.get("volumes", []):
        m = re.fullmatch(r"(?P<src>.+?):(?P<dst>/[^:]*)(?::(?P<mode>ro|rw))?", volume)
        assert m, volume
        src = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", m["src"])
        out[m["dst"]] = (src, m["mode"] or "rw")
    return out


def host_file(svc: dict, container_path: str) -> Path:
    """The repository file a container path is mounted from (a file mount or a folder above it)."""
    for dst, (src, _) in sorted(mounts(svc).items(), key=lambda kv: -len(kv[0])):
        if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
            return REPO / src / Path(container_path).relative_to(dst)
    raise AssertionError(f"{container_path} is not mounted")


def test_api_and_worker_run_under_the_operators_policy():
    """Issue 16: endpoints declared by the operator, data files only under a data root, mounted read-only."""
    from magdi.policy import OperatorPolicy

    for name in ("api", "generator"):
        svc = SERVICES[name]
        env = svc["environment"]
        assert env["MAGDI_DATA_ROOT"] == "/data" and mounts(svc)["/data"][1] == "ro", name
        endpoints_file = host_file(svc, env["MAGDI_ENDPOINTS_FILE"])
        assert endpoints_file == REPO / "configs" / "endpoints.yaml", (name, endpoints_file)
        policy = OperatorPolicy(endpoints_file=endpoints_file)
        assert policy.endpoints, "the compose stack declares endpoints"
        for endpoint in policy.endpoints:
            host = re.match(r"https?://([^:/]+)(?::(\d+))?", endpoint.base_url)
            assert host and not (endpoint.api_key_env or "").upper().startswith("MAGDI_")
            if host[1] in SERVICES:  # a compose service: private, so allow-listed, and on the port it serves
                assert host[1] in policy.egress_allow, endpoint.name
                argv = as_argv(SERVICES[host[1]]["command"])
                assert argv[argv.index("--port") + 1] == host[2], endpoint.name
        assert "MAGDI_API_TOKEN" not in env or name == "api", "the worker never holds the API token"
    assert SERVICES["generator"]["environment"]["MAGDI_JOB_MAX_COST_USD"], "a cost cap per queued job"
    allowed = SERVICES["api"]["environment"]["MAGDI_API_ALLOWED_HOSTS"]
    assert {"localhost", "127.0.0.1"} <= set(re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", allowed).split(",")), \
        "the port mapping (localhost) and the healthcheck (127.0.0.1) are served"


def test_neo4j_caps_the_memory_of_one_transaction():
    value = SERVICES["neo4j"]["environment"]["NEO4J_db_memory_transaction_max"]
    default = re.fullmatch(r"\$\{NEO4J_TX_MEMORY_MAX:-(\d+)([mg])\}", value)
    assert default, value
    heap = re.fullmatch(r"\$\{NEO4J_HEAP:-(\d+)G\}", SERVICES["neo4j"]["environment"]["NEO4J_server_memory_heap_max__size"])
    assert heap and int(default[1]) * (1024 if default[2] == "g" else 1) < int(heap[1]) * 1024, "below the heap"
# -- a real Compose implementation -------------------------------------------------------------
needs_podman_compose = pytest.mark.skipif(compose_helpers.unavailable() is not None,
                                          reason=compose_helpers.unavailable() or "")
PASSWORD = {"MAGDI_NEO4J_PASSWORD": "a-test-password"}


@needs_podman_compose
def test_the_trainer_profile_needs_only_the_neo4j_password():
    code, out, config = compose_config("--profile", "train", env=PASSWORD)
    assert code == 0, out
    assert {"neo4j", "api", "generator", "trainer"} <= set(config["services"])
    assert "teachers" not in config["services"]
    trainer = config["services"]["trainer"]
    assert trainer["environment"]["MAGDI_NEO4J_URI"] == "bolt://neo4j:7687"
    assert trainer["environment"]["MAGDI_TRAIN_DATA__SOURCE"] == "neo4j"
    assert config["services"]["api"]["environment"]["MAGDI_API_TOKEN"] == ""  # the api starts closed

    code, out, _ = compose_config("--profile", "train", env={})
    assert code != 0 and "MAGDI_NEO4J_PASSWORD" in out


@needs_podman_compose
def test_the_trainer_bolt_uri_and_data_source_are_overridable():
    env = {**PASSWORD, "MAGDI_TRAINER_NEO4J_URI": "bolt://db.internal:7687",
           "MAGDI_TRAIN_DATA__SOURCE": "jsonl:/app/outputs/mags.jsonl"}
    code, out, config = compose_config("--profile", "train", env=env)
    assert code == 0, out
    trainer, api = config["services"]["trainer"], config["services"]["api"]
    assert trainer["environment"]["MAGDI_NEO4J_URI"] == "bolt://db.internal:7687"
    assert api["environment"]["MAGDI_NEO4J_URI"] == "bolt://neo4j:7687"
    assert trainer["environment"]["MAGDI_TRAIN_DATA__SOURCE"] == "jsonl:/app/outputs/mags.jsonl"
    assert "./outputs:/app/outputs" in trainer["volumes"]  # where an exported file is read from


@needs_podman_compose
@pytest.mark.parametrize("profile", ["", "train", "simulation"])
def test_every_bind_mount_and_path_a_service_reads_is_in_the_repo(profile):
    code, out, config = compose_config(*(["--profile", profile] if profile else []), env=PASSWORD)
    assert code == 0, out
    for name, svc in config["services"].items():
        mounts = {}
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                mounts[target] = REPO / source
                if source != "./outputs":  # written by the trainer; Compose creates it
                    assert mounts[target].exists(), f"{name} mounts {source}, which is not in the repository"
        for arg in svc.get("command", []):
            for target, host in mounts.items():
                if arg.startswith(target + "/"):
                    assert (host / arg.removeprefix(target + "/")).exists(), f"{name} reads {arg}: not in {host}"


def test_a_panel_points_at_the_compose_teachers():
    from urllib.parse import urlsplit

    from magdi.panel import load_panel
    from services.teachers.replay import RECORDED_MODELS

    panel = load_panel(REPO / "configs" / "panels" / "compose-simulated.yaml")
    teachers = as_argv(SERVICES["teachers"]["command"])
    for agent in panel.agents:
        url = urlsplit(agent.base_url)
        assert (url.hostname, url.port) == ("teachers", int(teachers[teachers.index("--port") + 1]))
        assert agent.model in RECORDED_MODELS


def test_the_trainer_image_installs_the_tested_versions():
    """trainer/constraints.txt is what the venv holds, and both the image and `make install` use it."""
    import subprocess
    import sys

    check = subprocess.run([sys.executable, str(REPO / "scripts" / "trainer_constraints.py"), "--check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, ("trainer/constraints.txt differs from the tested venv; run "
                                   "`.venv/bin/python scripts/trainer_constraints.py`:\n" + check.stdout + check.stderr)
    pins = (REPO / "trainer" / "constraints.txt").read_text()
    for package in ("torch", "transformers", "peft", "torch-geometric"):
        assert re.search(rf"^{package}==\S+$", pins, re.M), package
    runs = [args for word, args in instructions(dockerfile(SERVICES["trainer"])) if word == "RUN"]
    assert any("-c trainer/constraints.txt" in r and ".[trainer]" in r for r in runs), runs
    assert '-e ".[dev]" -c trainer/constraints.txt' in (REPO / "Makefile").read_text()
