"""Each image's own command runs from what its Dockerfile copies, and a part an image lacks is named.

Each image holds the core and its own part only: the API image's `magdi serve` (its CMD), the
generator's `magdi worker` and the trainer's `magdi train` must work from exactly those files, and
another part's command must say that it is not in this image instead of vanishing or crashing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from image_sources import REPO, rebuild, run_python

MAGDI = "import sys; from magdi.cli import app; sys.argv = ['magdi', *sys.argv[1:]]; app()"


def magdi(root: Path, *args: str):  # noqa: ANN201
    script = MAGDI.replace("sys.argv[1:]", repr(list(args)))
    return run_python(root, script)


@pytest.fixture(scope="module")
def api_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rebuild(REPO / "services" / "api" / "Dockerfile", tmp_path_factory.mktemp("api-image"))


def test_the_api_images_command_runs_from_what_it_copies(api_image: Path):
    assert not (api_image / "services" / "generator").exists() and not (api_image / "trainer").exists()
    listed = magdi(api_image, "--help")
    assert listed.returncode == 0, listed.stderr[-3000:]
    for command in ("serve", "generate", "worker", "train", "eval", "db", "export"):
        assert command in listed.stdout
    serve = magdi(api_image, "serve", "--help")
    assert serve.returncode == 0 and "--port" in serve.stdout, serve.stderr[-3000:]


def test_a_part_the_image_lacks_is_named_not_a_traceback(api_image: Path):
    result = magdi(api_image, "generate", "--job", "x")
    assert result.returncode == 2, result.stderr[-3000:]
    said = " ".join((result.stdout + result.stderr).split())
    assert "`magdi generate` needs services.generator" in said and "[generator]" in said
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("dockerfile", "own", "absent", "missing_dirs"), [
    ("services/generator/Dockerfile", ("worker", "generate"), "serve", ("services/api", "trainer", "services/teachers")),
    ("trainer/Dockerfile", ("train", "eval"), "worker", ("services/generator", "services/api", "services/teachers")),
])
def test_each_image_runs_its_own_commands_from_its_own_files(tmp_path: Path, dockerfile: str, own: tuple[str, ...],
                                                             absent: str, missing_dirs: tuple[str, ...]):
    root = rebuild(REPO / dockerfile, tmp_path)
    assert not [d for d in missing_dirs if (root / d).exists()], "the image copies only its own part"
    for command in own:
        result = magdi(root, command, "--help")
        assert result.returncode == 0, result.stderr[-3000:]
    other = magdi(root, absent)
    assert other.returncode == 2 and f"`magdi {absent}` needs" in " ".join((other.stdout + other.stderr).split())
