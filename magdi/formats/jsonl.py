"""Our lossless format: one MAG per line, exactly the `Debate` model (nodes and edges included).

Re-importing a file gives the identical graph: ids are derived, never stored, so a line cannot
smuggle in an id that disagrees with its content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from magdi.formats import FormatError, loads_record
from magdi.mag import Debate

FORMAT = "magdi-mag/1"


def to_line(d: Debate) -> str:
    body = json.loads(d.model_dump_json())
    return json.dumps({"format": FORMAT, "id": d.id, **body}, ensure_ascii=False)


def from_line(line: str, *, where: str) -> Debate:
    try:
        data = loads_record(line, where)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{where}: expected a JSON object")
    fmt = data.pop("format", FORMAT)
    if fmt != FORMAT:
        raise FormatError(f"{where}, field 'format': unsupported {fmt!r} (expected {FORMAT!r})")
    claimed = data.pop("id", None)
    try:
        debate = Debate.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise FormatError(f"{where}, field {field!r}: {err['msg']}") from None
    if claimed is not None and claimed != debate.id:
        raise FormatError(f"{where}, field 'id': {claimed!r} does not match the content ({debate.id!r})")
    return debate


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    """(where, line) for each non-blank line."""
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    with fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                yield f"{path}: line {n}", line


def iter_file(path: Path) -> Iterator[Debate]:
    """Yield MAGs one line at a time (constant memory); the first bad line raises."""
    for where, line in _lines(path):
        yield from_line(line, where=where)


def load(path: Path, *, skip_invalid: bool = False) -> tuple[list[Debate], list[str]]:
    """Parse the whole file first; with errors and not `skip_invalid`, raise and store nothing.

    Two lines that are the same debate (same job and question record; for a debate without a job,
    also the same content) are an error naming both: storing them would merge them into one.
    """
    debates, errors = [], []
    seen: dict[str, str] = {}
    for where, line in _lines(path):
        try:
            debate = from_line(line, where=where)
        except FormatError as exc:
            errors.append(str(exc))
            continue
        debate_id = debate.id
        if debate_id in seen:
            q = debate.question
            errors.append(f"{where}: the same debate as {seen[debate_id].rsplit(': ', 1)[-1]} ({debate_id}: job "
                          f"{debate.job_id!r}, dataset {q.dataset!r}, question {q.qid!r}); a debate is stored once, "
                          f"so the two records would be merged")
            continue
        seen[debate_id] = where
        debates.append(debate)
    if errors and not skip_invalid:
        raise FormatError(f"{len(errors)} invalid record(s), nothing imported:\n  " + "\n  ".join(errors[:20]))
    return debates, errors


def dump(debates: Iterable[Debate], out: Path) -> int:
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        for d in debates:
            fh.write(to_line(d) + "\n")
            n += 1
    return n
