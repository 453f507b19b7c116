"""Floats in JSON output, rounded to what they can mean.

An accuracy of 0.6666666666666666 or a cost of 0.30000000000000004 is noise to a reader and to a
diff; six significant digits keep every figure the stats can resolve (a rate over a million
debates, a cost to the micro-dollar on a thousand-dollar run) and drop the binary residue.
"""

from __future__ import annotations

import math
from typing import Any

SIGNIFICANT_DIGITS = 6


def round_floats(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """`value` with every float inside (dicts, lists, tuples) rounded to `digits` significant digits."""
    if isinstance(value, float):
        return value if not math.isfinite(value) or value == 0 else float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v, digits) for v in value]
    return value
