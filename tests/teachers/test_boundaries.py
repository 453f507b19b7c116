"""The simulated panel is a part of its own: the generator never imports it, it imports only the shared
core, and only its own image carries it (a production generator ships no simulation)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from image_sources import copied, rebuild, run_python

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
    root = rebuild(REPO / "services" / "teachers" / "Dockerfile", tmp_path)
    script = ("from services.teachers.cli import main; from services.teachers.server import create_app; "
              "import sys; assert 'services.generator' not in sys.modules; main(['--help'])")
    result = run_python(root, script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--solutions" in result.stdout and "--per-model" in result.stdout
    denied = run_python(root, "import services.generator")
    assert denied.returncode != 0  # the check above really ran without the rest of the repository
