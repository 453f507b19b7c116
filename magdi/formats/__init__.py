"""Import and export formats: `magdi-ref` (the MAGDi reference JSON) and `jsonl` (ours, lossless)."""

from __future__ import annotations


class FormatError(ValueError):
    """A malformed input file; the message names the file, the record and the field."""
