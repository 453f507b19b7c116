"""Import and export formats: `magdi-ref` (the MAGDi reference JSON) and `jsonl` (ours, lossless).

Also the one JSON reader every import path uses: a value nested deeper than MAX_DEPTH (which
Python's own parser would turn into a RecursionError, and the driver into a stack overflow) is a
FormatError naming the record and the field.
"""

from __future__ import annotations

import json
from typing import Any

from magdi.errors import UserError

MAX_DEPTH = 64  # nesting levels of one record; a MAG with prompts and outputs needs about 6


class FormatError(UserError):
    """A malformed input file; the message names the file, the record and the field."""


def _field(path: list[Any]) -> str:
    shown = ".".join(str(p) for p in path[:4])
    return shown + (f"... ({len(path)} levels)" if len(path) > 4 else "")


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """FormatError naming the field of `value` (one record) where nesting passes `limit` levels."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in children:
            if isinstance(child, dict | list):
                if len(path) + 2 > limit:  # the record is level 1, this child level len(path) + 2
                    raise FormatError(f"{where}, field {_field([*path, key])!r}: JSON nested deeper than "
                                      f"{limit} levels")
                stack.append((child, [*path, key]))


def locate_deep(text: str, records_at: int, limit: int = MAX_DEPTH) -> tuple[int | None, str | None]:
    """(record index, top-level field) where `text` first nests deeper than `limit` levels.

    `records_at` is the nesting level of the records: 0 for a JSON line (the value is the record),
    1 for a JSON list of records. A plain character scan, used when the parser itself gave up.
    """
    depth, index, key, last_string = 0, -1, None, None
    in_string = escaped = False
    start = 0
    for pos, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                last_string = text[start:pos]
            continue
        if ch == '"':
            in_string, start = True, pos + 1
        elif ch in "[{":
            depth += 1
            if depth == records_at + 1:
                index, key = index + 1, None
            if depth > records_at + limit:
                return (None if records_at == 0 else index), key
        elif ch in "]}":
            depth -= 1
        elif ch == ":" and depth == records_at + 1:
            key = last_string
    return None, None


def loads_record(text: str, where: str) -> Any:
    """One record's JSON (a line of a JSON-lines file), nesting checked; JSONDecodeError passes through."""
    try:
        value = json.loads(text)
    except RecursionError:
        _, key = locate_deep(text, 0)
        field = f", field {key!r}" if key else ""
        raise FormatError(f"{where}{field}: JSON nested deeper than {MAX_DEPTH} levels") from None
    check_depth(value, where)
    return value


def loads_records(text: str, where: str) -> Any:
    """A whole JSON document whose top-level list holds the records; each record's nesting checked."""
    try:
        value = json.loads(text)
    except RecursionError:
        index, key = locate_deep(text, 1)
        record = f": record {index}" if index is not None else ""
        field = f", field {key!r}" if key else ""
        raise FormatError(f"{where}{record}{field}: JSON nested deeper than {MAX_DEPTH} levels") from None
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_depth(item, f"{where}: record {i}")
    else:
        check_depth(value, where)
    return value
