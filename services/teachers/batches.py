"""OpenAI's Batch API on the simulated panel (SIMULATION): ``/v1/files`` and ``/v1/batches``.

Users at scale send debates through a provider's Batch API (half the price, its own quota), and
`vllm run-batch` reads and writes the same files; this lets the client side be tested against a
real HTTP server. Shapes are those the `openai` SDK parses (`FileObject`, `Batch`, the lines of
the output and error files). A line is answered by `chat.ChatReplay`, exactly as the same body
sent to ``/v1/chat/completions`` would be (same policy, same seeded faults, same counters), but
without the RPM/TPM quota, latency or connection faults.

Life of a batch, driven by the clock and brought up to date whenever it is read (so what is
answered depends on the configuration and the clock, never on how often a client polls):

- ``validating`` (the answer to create), then ``failed`` when the input file breaks a rule
  (``errors.data`` names the line: invalid_json_line, missing_required_parameter, invalid_method,
  url_mismatch, duplicate_custom_id, model_mismatch, empty_file, too_many_tasks), else
  ``in_progress``;
- line i of n is answered at ``created_at + batch_completion_s * (i + 1) / n``; once all are,
  ``completed``;
- still running at ``created_at + batch_expiry_s``: ``expired``; after cancel: ``cancelling``,
  then ``cancelled`` ``batch_cancel_s`` later. Both keep the lines answered before the cut and
  list the others in the error file (``batch_expired`` / ``batch_cancelled``).

Successful lines (HTTP 200) go to the output file, the others to the error file, each in a seeded
shuffled order (the real API promises no order: match lines by ``custom_id``). Everything is held
in memory and lost when the process stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, UploadFile
from starlette.responses import JSONResponse, Response

from services.teachers.chat import ChatReplay, Refusal
from services.teachers.config import PanelSimConfig
from services.teachers.faults import error_body

logger = logging.getLogger(__name__)

CHAT_ENDPOINT = "/v1/chat/completions"
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})
MAX_VALIDATION_ERRORS = 10
_CUT_MESSAGES = {
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
}


def _invalid(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> JSONResponse:
    return JSONResponse(error_body(message, "invalid_request_error", code, param), status_code=status)


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


class FileStore:
    """Uploaded input files and the output/error files that finished batches write."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}

    def add(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile(_new_id("file-"), filename, purpose, content, int(time.time()))
        self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def delete(self, file_id: str) -> bool:
        return self._files.pop(file_id, None) is not None


@dataclass
class Line:
    """One request of a batch: its place in the input file, when it is due, and its answer line."""

    number: int  # 1-based line number in the input file
    custom_id: str
    body: dict[str, Any]
    due: float
    result: dict[str, Any] | None = None

    def ok(self) -> bool:
        return self.result is not None and (self.result.get("response") or {}).get("status_code") == 200


@dataclass
class SimBatch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: float
    expires_at: float
    lines: list[Line] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # validation errors (a failed batch)
    status: str = "validating"
    stamps: dict[str, float] = field(default_factory=dict)  # in_progress_at, cancelling_at, ...
    output_file_id: str | None = None
    error_file_id: str | None = None
    answered: int = 0  # lines[:answered] have a result
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def as_json(self) -> dict[str, Any]:
        answered = sum(1 for line in self.lines if line.result is not None)
        succeeded = [line.result for line in self.lines if line.ok()]
        completed = len(succeeded)
        usage = [r["response"]["body"].get("usage") or {} for r in succeeded if r is not None]
        tin = sum(max(u.get("prompt_tokens", 0), 0) for u in usage)
        tout = sum(max(u.get("completion_tokens", 0), 0) for u in usage)

        def stamp(name: str) -> int | None:
            return int(self.stamps[name]) if name in self.stamps else None

        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": int(self.created_at), "in_progress_at": stamp("in_progress_at"),
            "expires_at": int(self.expires_at), "finalizing_at": stamp("finalizing_at"),
            "completed_at": stamp("completed_at"), "failed_at": stamp("failed_at"),
            "expired_at": stamp("expired_at"), "cancelling_at": stamp("cancelling_at"),
            "cancelled_at": stamp("cancelled_at"),
            "request_counts": {"total": len(self.lines), "completed": completed,
                               "failed": answered - completed},
            "metadata": self.metadata,
            "usage": {"input_tokens": tin, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tout,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": tin + tout},
        }


def validate_input(content: bytes, endpoint: str, max_requests: int) -> tuple[list[tuple[int, str, dict[str, Any]]],
                                                                          str | None, list[dict[str, Any]]]:
    """(requests as (line number, custom_id, body), the model, errors) of a batch input file."""
    errors: list[dict[str, Any]] = []
    requests: list[tuple[int, str, dict[str, Any]]] = []
    seen: set[str] = set()
    model: str | None = None

    def fail(number: int | None, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "line": number, "message": message, "param": param})

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        fail(None, "invalid_json_line", "The file is not UTF-8 text.")
        return [], None, errors
    numbered = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not numbered:
        fail(None, "empty_file", "The input file is empty.")
    if len(numbered) > max_requests:
        fail(None, "too_many_tasks", f"The batch has {len(numbered)} requests; at most {max_requests} are allowed.")
    for number, raw in numbered:
        if len(errors) >= MAX_VALIDATION_ERRORS:
            break
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            fail(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(item, dict):
            fail(number, "invalid_json_line", "This line is not a JSON object.")
            continue
        missing = [k for k in ("custom_id", "method", "url", "body") if k not in item]
        if missing:
            fail(number, "missing_required_parameter", f"Missing required parameter: '{missing[0]}'.", missing[0])
            continue
        custom_id, body = item["custom_id"], item["body"]
        if not isinstance(custom_id, str) or not custom_id:
            fail(number, "missing_required_parameter", "custom_id must be a non-empty string.", "custom_id")
        elif custom_id in seen:
            fail(number, "duplicate_custom_id", f"The custom_id {custom_id!r} is used by an earlier line.",
                 "custom_id")
        elif item["method"] != "POST":
            fail(number, "invalid_method", "Only POST is supported.", "method")
        elif item["url"] != endpoint:
            fail(number, "url_mismatch", f"The url must match the batch endpoint {endpoint}.", "url")
        elif not isinstance(body, dict) or not isinstance(body.get("model"), str):
            fail(number, "missing_required_parameter", "body.model must be a string.", "body.model")
        elif model is not None and body["model"] != model:
            fail(number, "model_mismatch", f"All requests in a batch must use one model ({model!r}).",
                 "body.model")
        else:
            model = model or body["model"]
            seen.add(custom_id)
            requests.append((number, custom_id, body))
    return requests, model, errors


class BatchBook:
    """The batches of one panel: creation, the clock-driven lifecycle, cancellation."""

    def __init__(self, config: PanelSimConfig, replay: ChatReplay, files: FileStore) -> None:
        self.config, self.replay, self.files = config, replay, files
        self.batches: dict[str, SimBatch] = {}

    def create(self, input_file: StoredFile, endpoint: str, window: str,
               metadata: dict[str, str] | None) -> SimBatch:
        now = time.time()
        requests, model, errors = validate_input(input_file.content, endpoint, self.config.batch_max_requests)
        batch = SimBatch(_new_id("batch_"), input_file.id, endpoint, window, metadata, now,
                         now + self.config.batch_expiry_s, model=model, errors=errors)
        if not errors:
            n, span = len(requests), self.config.batch_completion_s
            batch.lines = [Line(number, cid, body, now + span * (i + 1) / n)
                           for i, (number, cid, body) in enumerate(requests)]
        self.batches[batch.id] = batch
        return batch

    async def refresh(self, batch: SimBatch) -> SimBatch:
        """Bring `batch` up to the present: answer the lines now due, then finish it if its time came."""
        async with batch.lock:
            now = time.time()
            if batch.status == "validating":
                if batch.errors:
                    batch.status, batch.stamps["failed_at"] = "failed", batch.created_at
                    return batch
                batch.status, batch.stamps["in_progress_at"] = "in_progress", batch.created_at
            if batch.status in TERMINAL:
                return batch
            cancelling_at = batch.stamps.get("cancelling_at", math.inf)
            await self._answer_due(batch, min(now, batch.expires_at, cancelling_at))
            if batch.status == "cancelling":
                if now >= cancelling_at + self.config.batch_cancel_s:
                    self._finish(batch, "cancelled", cancelling_at + self.config.batch_cancel_s)
            elif batch.answered == len(batch.lines):
                self._finish(batch, "completed", batch.lines[-1].due)
            elif now >= batch.expires_at:
                self._finish(batch, "expired", batch.expires_at)
            return batch

    def cancel(self, batch: SimBatch) -> Refusal | None:
        if batch.status in TERMINAL:
            return Refusal(409, f"Cannot cancel a batch with status '{batch.status}'.", "invalid_request_error")
        if batch.status != "cancelling":
            batch.status, batch.stamps["cancelling_at"] = "cancelling", time.time()
        return None

    async def _answer_due(self, batch: SimBatch, until: float) -> None:
        while batch.answered < len(batch.lines) and batch.lines[batch.answered].due <= until:
            line = batch.lines[batch.answered]
            status, body = self.answer(line.body)
            line.result = self._result_line(batch, line, {"status_code": status, "request_id": _req_id(batch, line),
                                                          "body": body}, None)
            batch.answered += 1
            if batch.answered % 64 == 0:
                await asyncio.sleep(0)  # a large batch must not stall the panel's other requests

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One batch line, answered as /v1/chat/completions would answer it (minus quota and transport)."""
        stats = self.replay.stats
        stats.requests += 1
        stats.batch_lines += 1
        turn = self.replay.admit(body)
        if isinstance(turn, Refusal):
            return turn.status, turn.body()
        rng = self.replay.attempt(turn)
        fault = self.replay.draw_fault(turn, transport=False)
        if fault is None and rng.random() < self.replay.settings[turn.body.model].batch_error_rate:
            stats.faults["batch_line_error"] += 1
            return 500, Refusal(500, "The server had an error processing this request (simulated).",
                                "server_error").body()
        if fault == "error":
            refusal = self.replay.server_error(turn)
            return refusal.status, refusal.body()
        return 200, self.replay.complete(turn)

    @staticmethod
    def _result_line(batch: SimBatch, line: Line, response: dict[str, Any] | None,
                     error: dict[str, str] | None) -> dict[str, Any]:
        return {"id": f"batch_req_{_digest(batch.id, line.number)}", "custom_id": line.custom_id,
                "response": response, "error": error}

    def _finish(self, batch: SimBatch, status: str, at: float) -> None:
        if status in _CUT_MESSAGES:
            code, message = _CUT_MESSAGES[status]
            for line in batch.lines[batch.answered:]:
                line.result = self._result_line(batch, line, None, {"code": code, "message": message})
        rng = random.Random(f"{self.config.seed}|{batch.id}")
        outputs = [line.result for line in batch.lines if line.ok()]
        failures = [line.result for line in batch.lines if line.result is not None and not line.ok()]
        for lines, kind in ((outputs, "output"), (failures, "error")):
            if not lines:
                continue
            rng.shuffle(lines)
            content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines).encode()
            stored = self.files.add(f"{batch.id}_{kind}.jsonl", "batch_output", content)
            setattr(batch, f"{kind}_file_id", stored.id)
        batch.status = status
        batch.stamps["finalizing_at"] = at
        batch.stamps[f"{status}_at"] = at


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _req_id(batch: SimBatch, line: Line) -> str:
    return f"req_{_digest('request', batch.id, line.number)}"


def _check_metadata(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return "metadata must be an object with at most 16 keys"
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            return "metadata keys must be at most 64 characters and values strings of at most 512"
    return None


def batch_router(config: PanelSimConfig, files: FileStore, book: BatchBook) -> APIRouter:
    """The /v1/files and /v1/batches routes of the simulated panel."""
    router = APIRouter(prefix="/v1")

    @router.post("/files", response_model=None)
    async def upload(file: UploadFile, purpose: Annotated[str, Form()]) -> dict[str, Any] | JSONResponse:
        if purpose not in FILE_PURPOSES:
            return _invalid(f"purpose must be one of {', '.join(FILE_PURPOSES)}", "purpose")
        name = file.filename or "upload"
        if purpose == "batch" and not name.endswith(".jsonl"):
            return _invalid("Invalid file format for Batch API. Must be .jsonl", "file")
        content = await file.read(config.batch_max_bytes + 1)
        if purpose == "batch" and len(content) > config.batch_max_bytes:
            return _invalid(f"File is larger than the {config.batch_max_bytes} bytes a batch input may have.",
                            "file", "file_too_large")
        return files.add(name, purpose, content).as_json()

    @router.get("/files/{file_id}", response_model=None)
    async def retrieve_file(file_id: str) -> dict[str, Any] | JSONResponse:
        stored = files.get(file_id)
        return stored.as_json() if stored else _no_such("File", file_id)

    @router.get("/files/{file_id}/content", response_model=None)
    async def file_content(file_id: str) -> Response:
        stored = files.get(file_id)
        if stored is None:
            return _no_such("File", file_id)
        return Response(stored.content, media_type="application/octet-stream")

    @router.delete("/files/{file_id}", response_model=None)
    async def delete_file(file_id: str) -> dict[str, Any] | JSONResponse:
        if not files.delete(file_id):
            return _no_such("File", file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @router.post("/batches", response_model=None)
    async def create_batch(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _invalid("The body is not valid JSON.")
        if not isinstance(body, dict):
            return _invalid("The body must be a JSON object.")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(key), str):
                return _invalid(f"Missing required parameter: '{key}'.", key, "missing_required_parameter")
        if body["endpoint"] != CHAT_ENDPOINT:
            return _invalid(f"The simulated panel batches only {CHAT_ENDPOINT}.", "endpoint")
        if body["completion_window"] != "24h":
            return _invalid("completion_window must be '24h'.", "completion_window")
        if problem := _check_metadata(body.get("metadata")):
            return _invalid(problem, "metadata")
        stored = files.get(body["input_file_id"])
        if stored is None:
            return _no_such("File", body["input_file_id"], "input_file_id")
        if stored.purpose != "batch":
            return _invalid(f"File {stored.id} has purpose {stored.purpose!r}; a batch input needs 'batch'.",
                            "input_file_id")
        batch = book.create(stored, body["endpoint"], body["completion_window"], body.get("metadata"))
        logger.info("batch %s: %d lines for %s", batch.id, len(batch.lines), batch.model)
        return batch.as_json()

    @router.get("/batches/{batch_id}", response_model=None)
    async def retrieve_batch(batch_id: str) -> dict[str, Any] | JSONResponse:
        batch = book.batches.get(batch_id)
        return (await book.refresh(batch)).as_json() if batch else _no_such("Batch", batch_id)

    @router.post("/batches/{batch_id}/cancel", response_model=None)
    async def cancel_batch(batch_id: str) -> dict[str, Any] | JSONResponse:
        batch = book.batches.get(batch_id)
        if batch is None:
            return _no_such("Batch", batch_id)
        await book.refresh(batch)
        if refusal := book.cancel(batch):
            return refusal.response()
        return batch.as_json()

    @router.get("/batches", response_model=None)
    async def list_batches(after: str | None = None,
                           limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        newest_first = list(reversed(book.batches.values()))
        if after is not None:
            ids = [b.id for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1:] if after in ids else []
        page = [(await book.refresh(b)).as_json() for b in newest_first[:limit]]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(newest_first) > limit}

    return router


def _no_such(kind: str, object_id: str, param: str | None = None) -> JSONResponse:
    return _invalid(f"No such {kind} object: {object_id}", param, status=404)
