"""Exports streamed as NDJSON: one record a line, straight from a paged Neo4j cursor.

`StreamingResponse` pulls the generator chain `store.iter_debates -> exporter -> json line` one
item at a time, so memory stays flat whatever the number of MAGs. Every format is NDJSON here,
`magdi-ref` included (one reference object a line; `magdi export` writes it as a JSON list).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from magdi.formats.exports import EXPORTERS, exporter
from services.api.deps import FilterDep, ReadAccess, SettingsDep, StoreDep
from services.api.schemas import ErrorOut

log = logging.getLogger(__name__)
NDJSON = "application/x-ndjson"

# The formats known when the app is built (an exporter registered later needs a restart).
ExportFormat = StrEnum("ExportFormat", {name.replace("-", "_"): name for name in sorted(EXPORTERS)})  # type: ignore[misc]

router = APIRouter(prefix="/v1/exports", tags=["exports"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


class NDJSONResponse(StreamingResponse):
    """A streamed body of JSON lines; as the route's response class it is the ONE 200 type in OpenAPI."""

    media_type = NDJSON


def _lines(records: Iterator[dict[str, Any]], fmt: str) -> Iterator[bytes]:
    n = 0
    try:
        for record in records:
            yield (json.dumps(record, ensure_ascii=False) + "\n").encode()
            n += 1
    except Exception:
        # Headers are gone already: the client sees a cut-off stream, never a silently short one.
        log.exception("export %s failed after %d records", fmt, n)
        raise
    log.info("export %s: %d records", fmt, n)


@router.get("/{fmt}", dependencies=[ReadAccess], response_class=NDJSONResponse,
            responses={200: {"content": {NDJSON: {"schema": {"type": "string",
                                                             "description": "one JSON record per line"}}},
                             "description": "one JSON record per line"},
                       404: {"model": ErrorOut, "description": "unknown job"}})
def export(fmt: ExportFormat, store: StoreDep, flt: FilterDep, settings: SettingsDep) -> NDJSONResponse:
    """Stream MAGs as `magdi-ref`, `jsonl`, `sft` or `dpo` records, filtered like `GET /v1/debates`."""
    records = exporter(fmt.value)(store.iter_debates(flt, batch_size=settings.export_batch_size))
    return NDJSONResponse(_lines(records, fmt.value),
                          headers={"Content-Disposition": f'attachment; filename="magdi-{fmt.value}.ndjson"'})
