"""Each image's own command runs from what its Dockerfile copies, and a part an image lacks is named.

The API image holds the core and `services/api` only: `magdi serve` (its CMD) must work there, and
`magdi generate` must say that the generator is not in this image instead of vanishing or crashing.
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
