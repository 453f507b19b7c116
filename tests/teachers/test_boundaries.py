"""The simulated panel is a part of its own: the generator never imports it, it imports only the shared
core, and only its own image carries it (a production generator ships no simulation)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = {"magdi", "services", "trainer"}


def project_imports(package: Path) -> dict[str, set[str]]:
    """file -> the project modules it imports (top level or inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = {n for n in names if n.split(".")[0] in PROJECT}
    return found


def test_the_generator_never_imports_the_simulated_panel():
    imports = project_imports(REPO / "services" / "generator")
    assert not (REPO / "services" / "generator" / "teachers").exists()
    offenders = {file: sorted(mods) for file, mods in imports.items() if any("teachers" in m.split(".") for m in mods)}
    assert not offenders


def test_the_panel_imports_the_core_and_itself_only():
    """Not `magdi.cli` either: its package registers every part's commands, which the panel's image lacks."""
    allowed = re.compile(r"(magdi(?!\.cli)(\.\w+)*|services\.teachers(\.\w+)*)")
    imports = project_imports(REPO / "services" / "teachers")
    assert len(imports) > 5  # the package was found
    offenders = {file: sorted(m for m in mods if not allowed.fullmatch(m)) for file, mods in imports.items()}
    assert not {file: mods for file, mods in offenders.items() if mods}


def copied(dockerfile: Path) -> list[str]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [src for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for src in line.split()[:-1]
            if not src.startswith("--")]


@pytest.mark.parametrize("image", ["services/generator/Dockerfile", "services/api/Dockerfile", "trainer/Dockerfile"])
def test_no_other_image_copies_the_panel(image):
    sources = copied(REPO / image)
    assert sources, image
    assert not [s for s in sources if s.rstrip("/") in ("services", ".") or s.startswith("services/teachers")]


def test_the_panels_image_copies_the_core_and_the_panel_only():
    assert sorted(copied(REPO / "services" / "teachers" / "Dockerfile")) == sorted(
        ["pyproject.toml", "README.md", "magdi", "services/__init__.py", "services/teachers"])


def test_what_the_panels_image_copies_is_enough_to_run_it(tmp_path: Path):
    """Its COPY sources alone (no generator, API or trainer code; no editable install) build the app."""
    for src in copied(REPO / "services" / "teachers" / "Dockerfile"):
        (tmp_path / src).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, tmp_path / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / src, tmp_path / src)
    # -S: no .pth files, so the editable install cannot reach the repository; packages from site-packages
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), sysconfig.get_paths()["purelib"]]), "PATH": os.environ["PATH"]}
    script = ("from services.teachers.cli import main; from services.teachers.server import create_app; "
              "import sys; assert 'services.generator' not in sys.modules; main(['--help'])")
    result = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--solutions" in result.stdout and "--per-model" in result.stdout
    denied = subprocess.run([sys.executable, "-S", "-c", "import services.generator"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0  # the check above really ran without the rest of the repository
