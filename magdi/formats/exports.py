"""Export formats as streams of JSON records, shared by `magdi export` and the API.

Each exporter maps an iterable of MAGs to an iterator of plain dicts, so a million MAGs are never
in memory at once: the caller writes each record as it comes (NDJSON, or a JSON list).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from magdi.errors import UserError
from magdi.formats import dpo, magdi_ref, sft
from magdi.mag import Debate

Exporter = Callable[[Iterable[Debate]], Iterator[dict[str, Any]]]


def _jsonl(debates: Iterable[Debate]) -> Iterator[dict[str, Any]]:
    from magdi.formats.jsonl import FORMAT

    for d in debates:
        yield {"format": FORMAT, "id": d.id, **json.loads(d.model_dump_json())}


EXPORTERS: dict[str, Exporter] = {
    "magdi-ref": magdi_ref.iter_records,
    "jsonl": _jsonl,
    "sft": sft.iter_records,
    "dpo": dpo.iter_records,
}


def exporter(name: str) -> Exporter:
    try:
        return EXPORTERS[name]
    except KeyError:
        raise UserError(f"unknown export format {name!r}; known: {', '.join(sorted(EXPORTERS))}") from None
