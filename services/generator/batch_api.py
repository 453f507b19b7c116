"""Client side of OpenAI's Batch API: the building blocks of a round-synchronous batch mode.

At 10^5+ debates users go through a provider's Batch API (half the price, a separate quota) or
`vllm run-batch` (the same file format, offline). A debate round depends on the previous one,
so a round's turns go out together: `build_input_files` writes them as batch input files (one
model per file, as OpenAI requires, split at the provider's request and byte limits), `submit`
uploads one and creates its batch, `wait` polls it with backoff until it ends, and `collect`
downloads the output and error files into one `LineResult` per custom_id, every requested id
accounted for. Turning results into stored turns is the engine's business, not this module's.

Crash safety starts here: `submit(..., key=...)` tags the batch with a client key in its
metadata and first looks for a batch already created under that key, so a process killed
between creating a batch and recording its id does not pay for the same requests twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types import Batch

from magdi.panel import AgentConfig, BatchLimits, Price
from services.generator.client import CallResult

logger = logging.getLogger(__name__)

CHAT_URL = "/v1/chat/completions"
KEY_FIELD = "magdi_key"  # the metadata field holding the client key of a batch
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
RETRYABLE = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make; `custom_id` finds its answer among the batch's output lines."""

    custom_id: str
    body: Mapping[str, Any]

    @property
    def model(self) -> str:
        return str(self.body["model"])

    def line(self) -> bytes:
        """Its line of a batch input file (newline included)."""
        item = {"custom_id": self.custom_id, "method": "POST", "url": CHAT_URL, "body": dict(self.body)}
        return (json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def chat_request(custom_id: str, agent: AgentConfig, messages: Sequence[Mapping[str, str]]) -> ChatRequest:
    """The request the synchronous path would send for this agent and prompt, as a batch line."""
    body: dict[str, Any] = {"model": agent.model, "messages": [dict(m) for m in messages],
                            "max_tokens": agent.max_tokens}
    if agent.temperature is not None:
        body["temperature"] = agent.temperature
    return ChatRequest(custom_id, body)


@dataclass(frozen=True)
class InputFile:
    """One batch input file: requests for one model, within the limits."""

    model: str
    custom_ids: tuple[str, ...]
    content: bytes


def build_input_files(requests: Iterable[ChatRequest], limits: BatchLimits = BatchLimits()) -> list[InputFile]:
    """Group requests by model (first-seen order) and cut each group at the request and byte limits.

    ValueError for an empty or repeated custom_id (the provider would fail the whole batch) and for a
    single request larger than the byte limit (no split can send it).
    """
    groups: dict[str, list[tuple[str, bytes]]] = {}
    seen: set[str] = set()
    for request in requests:
        if not request.custom_id:
            raise ValueError("a batch request needs a non-empty custom_id")
        if request.custom_id in seen:
            raise ValueError(f"custom_id {request.custom_id!r} appears twice; each must be unique in a batch")
        seen.add(request.custom_id)
        line = request.line()
        if len(line) > limits.max_bytes:
            raise ValueError(f"request {request.custom_id!r} is {len(line)} bytes, over the batch limit of "
                             f"{limits.max_bytes}")
        groups.setdefault(request.model, []).append((request.custom_id, line))
    files: list[InputFile] = []
    for model, lines in groups.items():
        ids: list[str] = []
        chunk: list[bytes] = []
        size = 0
        for custom_id, line in lines:
            if chunk and (len(chunk) == limits.max_requests or size + len(line) > limits.max_bytes):
                files.append(InputFile(model, tuple(ids), b"".join(chunk)))
                ids, chunk, size = [], [], 0
            ids.append(custom_id)
            chunk.append(line)
            size += len(line)
        files.append(InputFile(model, tuple(ids), b"".join(chunk)))
    return files


@dataclass(frozen=True)
class Submitted:
    """A created batch and what went into it (store these before waiting: they are what a resume needs)."""

    batch_id: str
    input_file_id: str
    model: str
    custom_ids: tuple[str, ...]
    reused: bool = False  # True: found under its key, created by an earlier process


async def find_batch(client: openai.AsyncOpenAI, key: str, *, scan: int = 1000) -> Batch | None:
    """The newest batch tagged with client key `key` among the `scan` newest batches, or None."""
    seen = 0
    async for batch in client.batches.list(limit=100):
        if (batch.metadata or {}).get(KEY_FIELD) == key:
            return batch
        seen += 1
        if seen >= scan:
            break
    return None


async def submit(client: openai.AsyncOpenAI, file: InputFile, *, key: str | None = None,
                 metadata: Mapping[str, str] | None = None, filename: str = "batch.jsonl") -> Submitted:
    """Upload `file` and create its batch; with `key`, reuse the batch an earlier call created under it.

    The key must name the content (e.g. job, round, part and attempt): a reused batch is assumed to
    hold the same requests.
    """
    if key is not None and (existing := await find_batch(client, key)) is not None:
        logger.info("batch %s already exists for key %s (%s); not resubmitting", existing.id, key, existing.status)
        return Submitted(existing.id, existing.input_file_id, file.model, file.custom_ids, reused=True)
    uploaded = await client.files.create(file=(filename, file.content), purpose="batch")
    tags = {**(metadata or {}), **({KEY_FIELD: key} if key is not None else {})}
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT_URL, completion_window="24h",
                                        metadata=tags or None)
    logger.info("batch %s created: %d requests for %s", batch.id, len(file.custom_ids), file.model)
    return Submitted(batch.id, uploaded.id, file.model, file.custom_ids)


@dataclass(frozen=True)
class PollPolicy:
    """Delays between status checks: `initial_s`, times `factor` after each, at most `max_s`."""

    initial_s: float = 5.0
    factor: float = 1.5
    max_s: float = 60.0
    timeout_s: float = 25 * 3600.0  # OpenAI's window is 24 h; a little more before giving up

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)


class BatchTimeout(TimeoutError):
    """The batch did not end within the poll timeout; it may still be running (poll it again later)."""

    def __init__(self, batch_id: str, status: str | None, waited_s: float) -> None:
        super().__init__(f"batch {batch_id} still {status or 'unknown'} after {waited_s:.0f} s")
        self.batch_id, self.status = batch_id, status


async def wait(client: openai.AsyncOpenAI, batch_id: str, policy: PollPolicy = PollPolicy(), *,
               on_poll: Callable[[Batch], None] | None = None) -> Batch:
    """Poll until the batch is completed, failed, expired or cancelled; BatchTimeout after `timeout_s`.

    A failed status check (connection error, 429, 5xx) is simply retried at the next poll: polling
    changes nothing, and the timeout bounds the whole wait.
    """
    start, status, delays = time.monotonic(), None, policy.delays()
    while True:
        delay = next(delays)
        try:
            batch = await client.batches.retrieve(batch_id)
        except RETRYABLE as exc:
            logger.warning("checking batch %s failed (%s); retrying", batch_id, type(exc).__name__)
        else:
            status = batch.status
            if on_poll is not None:
                on_poll(batch)
            if status in TERMINAL:
                return batch
        waited = time.monotonic() - start
        if waited + delay > policy.timeout_s:
            raise BatchTimeout(batch_id, status, waited)
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class LineResult:
    """The outcome of one request: the completion (status 200) or why there is none."""

    custom_id: str
    status_code: int | None  # None: the request never ran (batch expired, cancelled or failed)
    body: Mapping[str, Any] | None = None  # the chat.completion, or the error body
    error: str | None = None  # None exactly when `ok`

    @property
    def ok(self) -> bool:
        return self.error is None

    def call_result(self, price: Price) -> CallResult:
        """As the synchronous path records a call (`price`: the endpoint's batch price)."""
        if not self.ok or self.body is None:
            return CallResult(attempts=1, error=self.error)
        choice = (self.body.get("choices") or [{}])[0]
        tin, tout = _usage(self.body.get("usage"))
        return CallResult(text=(choice.get("message") or {}).get("content") or "",
                          finish_reason=choice.get("finish_reason"), tokens_in=tin, tokens_out=tout,
                          attempts=1, cost_usd=price.cost(tin, tout))


def _usage(usage: Any) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens, or Nones when absent or nonsensical (negative, not integers)."""
    if not isinstance(usage, Mapping):
        return None, None
    tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(tin, int) and isinstance(tout, int) and tin >= 0 and tout >= 0:
        return tin, tout
    return None, None


def parse_line(raw: str) -> LineResult:
    """One line of an output or error file (OpenAI's and `vllm run-batch`'s shape); ValueError if unreadable."""
    item = json.loads(raw)
    if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
        raise ValueError("not a batch output line (no custom_id)")
    custom_id, response, error = item["custom_id"], item.get("response"), item.get("error")
    status = response.get("status_code") if isinstance(response, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    if error:  # the request did not run or was not answered (expired, cancelled, vLLM failures)
        why = f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else str(error)
        return LineResult(custom_id, status, body, why)
    if status != 200 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else "no completion in the line"
        return LineResult(custom_id, status, body, f"HTTP {status}: {message}")
    if not body.get("choices"):
        return LineResult(custom_id, status, body, "HTTP 200 without choices")
    return LineResult(custom_id, status, body)


@dataclass
class BatchResults:
    """Every requested custom_id's result; `failed` lists the ones to retry or store as absent."""

    batch: Batch
    results: dict[str, LineResult] = field(default_factory=dict)
    unreadable_lines: int = 0

    @property
    def succeeded(self) -> list[LineResult]:
        return [r for r in self.results.values() if r.ok]

    @property
    def failed(self) -> list[LineResult]:
        return [r for r in self.results.values() if not r.ok]


async def collect(client: openai.AsyncOpenAI, batch: Batch, custom_ids: Iterable[str]) -> BatchResults:
    """Download a finished batch's output and error files: one result per requested custom_id.

    A requested id found in neither file (a failed batch, a cut or unreadable line) gets an error
    result, so nothing requested goes missing; lines for ids not requested are ignored.
    """
    # errors first: where a line appears in both, the successful answer wins
    texts = [(await client.files.content(file_id)).text for file_id in (batch.error_file_id, batch.output_file_id)
             if file_id is not None]
    results, unreadable = read_results(texts, custom_ids, source=f"batch {batch.id}",
                                       missing=f"no result in batch {batch.id} (status {batch.status})")
    return BatchResults(batch, results, unreadable)


def read_results(texts: Iterable[str], custom_ids: Iterable[str], *, source: str,
                 missing: str) -> tuple[dict[str, LineResult], int]:
    """One result per requested custom_id from the text of output/error files (OpenAI's or `vllm
    run-batch`'s), read in order (a later success replaces an earlier failure); an id without a line
    gets `missing` as its error. Returns the results and the number of unreadable lines."""
    wanted = list(custom_ids)
    expected = set(wanted)
    results: dict[str, LineResult] = {}
    unreadable = 0
    for text in texts:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                result = parse_line(raw)
            except ValueError:  # json.JSONDecodeError included
                unreadable += 1
                continue
            if result.custom_id not in expected:
                logger.warning("%s: line for unknown custom_id %r ignored", source, result.custom_id)
                continue
            if result.ok or result.custom_id not in results:
                results[result.custom_id] = result
    if unreadable:
        logger.warning("%s: %d unreadable output lines", source, unreadable)
    for custom_id in wanted:
        results.setdefault(custom_id, LineResult(custom_id, None, None, missing))
    return results, unreadable
