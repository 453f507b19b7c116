"""The public benchmark data shipped in `data/` (see data/README.md), for tests and benchmarks.

A missing file is a failure, not a skip: a clone of the repository carries everything the suite reads.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def data_file(*parts: str) -> Path:
    """`data_file("gsm8k", "test.jsonl")`: a path under data/, which must exist."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the repository ships it under data/ (see data/README.md)")
    return path
