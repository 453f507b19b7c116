"""`podman-compose config` on docker-compose.yml: a real Compose implementation, no engine needed.

podman-compose (PyPI, a dev dependency) interpolates variables, applies profiles and merges anchors
the way Compose does. With Debian's podman installed (`make podman`) it runs as users run it;
without podman it runs with `--dry-run`, which `config` does not need podman for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")


def unavailable() -> str | None:
    """Why podman-compose cannot run here (the skip reason), or None."""
    if not PODMAN_COMPOSE.exists():
        return f"podman-compose is not installed in {PODMAN_COMPOSE.parent} (`make install` adds it)"
    return None


def compose_config(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, dict[str, Any] | None]:
    """Run `podman-compose [args] config` in the repo with ONLY `env` (plus PATH and HOME) set.

    Returns (exit code, stderr + stdout, the normalised compose file or None).
    """
    flags = [] if shutil.which("podman") else ["--dry-run"]
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    proc = subprocess.run([str(PODMAN_COMPOSE), *flags, "-f", str(REPO / "docker-compose.yml"), *args, "config"],
                          cwd=REPO, env={**base_env, **(env or {})}, capture_output=True, text=True, timeout=120)
    parsed = yaml.safe_load(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, proc.stderr + proc.stdout, parsed
