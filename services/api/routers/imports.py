"""Imports: a whole file in the body, validated completely before anything is written.

A bad record anywhere means a 422 naming the record and field, and the database untouched; a
good file is written in ONE transaction, so a failure while writing leaves nothing behind either.
"""

from __future__ import annotations

import math
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from magdi.answers import task_for_dataset
from magdi.formats import FormatError, jsonl, magdi_ref
from magdi.mag import Debate, TaskType
from magdi.store.graph_store import GraphStore, WriteConflict
from services.api.deps import SettingsDep, StoreDep, WriteAccess, field_error
from services.api.schemas import NAME_PATTERN, ErrorOut, ImportResult

router = APIRouter(prefix="/v1/imports", tags=["imports"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 413: {"model": ErrorOut}})


class ImportFormat(StrEnum):
    magdi_ref = "magdi-ref"
    jsonl = "jsonl"


_BODY = {"required": True, "content": {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}},
                         "example": [{"question": "2+2?", "gold_answer": "4",
                                      "alice_output_0": {"reasoning": "2+2=4.", "answer": "4",
                                                         "confidence_level": 0.9}}]},
    "application/x-ndjson": {"schema": {"type": "string"}},
}}


def parse(body: bytes, fmt: ImportFormat, dataset: str | None, task: TaskType | None) -> list[Debate]:
    """Every MAG in the body, or FormatError naming the first problems (nothing is written then)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"body: not UTF-8 (byte {exc.start})") from None
    with tempfile.TemporaryDirectory(prefix="magdi-import-") as tmp:
        path = Path(tmp) / "body"
        path.write_text(text, encoding="utf-8")
        try:
            if fmt is ImportFormat.magdi_ref:
                assert dataset is not None  # noqa: S101 - the handler checked
                debates, _ = magdi_ref.load(path, dataset=dataset, task=task or task_for_dataset(dataset))
            else:
                debates, _ = jsonl.load(path)
        except FormatError as exc:
            raise FormatError(str(exc).replace(str(path), "body")) from None
    _check(debates, dataset)
    return debates


def _check(debates: list[Debate], dataset: str | None) -> None:
    if not debates:
        raise FormatError("body: no MAGs in it")
    for i, d in enumerate(debates):
        if dataset is not None and d.question.dataset != dataset:
            raise FormatError(f"body: record {i}, field 'question.dataset': {d.question.dataset!r} is not the "
                              f"?dataset= given ({dataset!r})")
        for r in d.responses:
            for name in ("latency_s", "cost_usd"):
                value = getattr(r, name)
                if value is not None and not math.isfinite(value):
                    raise FormatError(f"body: record {i}, field 'responses.{r.agent}/{r.round}.{name}': not finite")


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[WriteAccess],
             openapi_extra={"requestBody": _BODY}, responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
async def import_file(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    fmt: Annotated[ImportFormat, Query(alias="format", description="magdi-ref (JSON list) | jsonl (a MAG a line)")],
    dataset: Annotated[str | None, Query(min_length=1, max_length=100, pattern=NAME_PATTERN,
                                         description="required for magdi-ref; for jsonl, checked")] = None,
    task: Annotated[TaskType | None, Query(description="magdi-ref answer type; default from the dataset")] = None,
) -> ImportResult:
    """Import a file given as the request body (magdi-ref needs `?dataset=`). Re-importing adds nothing.

    422: a bad record (named, with its field), two records that are one debate, nesting deeper than
    64 levels, an integer beyond 64 bits. 409: a question of the file is stored with other content.
    Either way nothing is written.
    """
    if fmt is ImportFormat.magdi_ref and dataset is None:
        raise field_error("query", "dataset", "required for format=magdi-ref")
    body = await request.body()
    try:
        debates = await run_in_threadpool(parse, body, fmt, dataset, task)
    except FormatError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    writer = GraphStore(store.driver, database=store.database, query_timeout_s=settings.import_timeout_s)
    try:
        await run_in_threadpool(writer.write_debates, debates)
    except WriteConflict as exc:
        raise HTTPException(409, detail=f"nothing imported: {exc}") from None
    return ImportResult(format=fmt.value, imported=len(debates), debate_ids=[d.id for d in debates])
