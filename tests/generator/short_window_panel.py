"""Run the simulated teacher panel with a shorter quota window (tests only).

The simulation's RPM/TPM limits use a fixed 60 s sliding window, so a 429's Retry-After can be
a minute. Tests set `--window 3` to meet the same 429 + Retry-After answers in seconds; every
other flag goes to `python -m services.teachers` unchanged.
"""

import sys

from services.teachers import cli, faults

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--window"]:
        faults.SlidingWindowLimiter.WINDOW_S = float(args[1])
        args = args[2:]
    cli.main(args)
