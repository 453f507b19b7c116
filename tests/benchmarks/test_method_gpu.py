"""`benchmarks/method_gpu.py --smoke`: the GPU comparison end to end on the CPU, at a tiny size.

Debates its own MAGs on the simulated panel, trains every arm for one step on the real SmolLM2 and
evaluates each on the same held-out MAGs and questions, so the one-call GPU run cannot fail on a
path the suite never took.
"""

from __future__ import annotations

import json

from benchmarks import method_gpu


def test_smoke_size_runs_every_arm_and_writes_the_tables(smollm2, tmp_path) -> None:
    assert method_gpu.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "smollm2-135m-instruct" / "results.json").read_text())
    assert list(results["arms"]) == list(method_gpu.ARM_ORDER)
    split = json.loads((tmp_path / "smollm2-135m-instruct" / "split.json").read_text())
    assert split["held_out"] and split["train"] and not set(split["held_out"]) & set(split["train"])
    for name, row in results["arms"].items():
        like, gen = row["likelihood"], row["generation"]
        assert like["mags"] == 2 and like["pairs"] >= 1 and like["nll_per_token"] > 0, name
        assert gen["n"] == 2 and gen["mean_output_tokens"] <= 8 and gen["token_ratio"] > 1, name
        assert ("node_accuracy" in like) == (name in ("magdi", "magdi-reference", "magdi-no-rank",
                                                       "magdi-correct-mags")), name
        assert (row.get("train", {}).get("steps", 0) == 1) == (name != "base"), name
    base, magdi = results["arms"]["base"]["likelihood"], results["arms"]["magdi"]["likelihood"]
    assert base["nll_per_token"] != magdi["nll_per_token"]  # one step changed the student
    summary = (tmp_path / "summary.md").read_text()
    assert "| magdi-reference | 1 |" in summary and "--smoke" in summary


def test_a_missing_mag_file_says_how_to_export_it(tmp_path, capsys) -> None:
    assert method_gpu.main(["--mags", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)]) == 2
    assert "python -m benchmarks.mags" in capsys.readouterr().err
