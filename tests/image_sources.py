"""What a Dockerfile copies into its image, rebuilt in a folder so a test can run the image's Python code.

No Docker engine here: the copy of the COPY sources plus `python -S` (no .pth files, so the editable
install cannot reach the repository; third-party packages still come from site-packages) is the
closest check that an image holds every module its command needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copied(dockerfile: Path) -> list[str]:
    """The source paths of every COPY line (flags such as --from skipped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [src for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for src in line.split()[:-1]
            if not src.startswith("--")]


def rebuild(dockerfile: Path, dest: Path) -> Path:
    """Copy the image's COPY sources from the repository into `dest`."""
    for src in copied(dockerfile):
        (dest / src).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, dest / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / src, dest / src)
    return dest


def run_python(image_root: Path, script: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -S -c script` seeing only the image's copy of the project."""
    env = {"PYTHONPATH": os.pathsep.join([str(image_root), sysconfig.get_paths()["purelib"]]),
           "PATH": os.environ["PATH"]}
    return subprocess.run([sys.executable, "-S", "-c", script], cwd=image_root, env=env, capture_output=True,
                          text=True, timeout=timeout_s)
