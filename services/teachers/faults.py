"""Fault injection for the simulated panel: quotas, random failures and a dropped connection.

Real endpoints rate-limit, time out, return 5xx, and now and then send garbage; the generator's
retry and parsing code is only trustworthy if it has met all of these. Draws come from an RNG
the server seeds per request, so a rerun of the same requests in the same order sees the same
faults.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import deque
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.teachers.config import PanelSimConfig

logger = logging.getLogger(__name__)

SIMULATED_HEADER = (b"x-magdi-simulated", b"true")

# checked in this order; the first fault whose draw hits wins
CONTENT_FAULTS: tuple[str, ...] = (
    "error",
    "timeout",
    "malformed",
    "empty",
    "truncated_body",
    "wrong_usage",
    "reset",
)


def draw_fault(config: PanelSimConfig, rng: random.Random) -> str | None:
    """One independent draw per fault kind, in CONTENT_FAULTS order; returns the first hit."""
    rates = {
        "error": config.error_rate,
        "timeout": config.timeout_rate,
        "malformed": config.malformed_rate,
        "empty": config.empty_rate,
        "truncated_body": config.truncated_body_rate,
        "wrong_usage": config.wrong_usage_rate,
        "reset": config.reset_rate,
    }
    for kind in CONTENT_FAULTS:
        if rng.random() < rates[kind]:
            return kind
    return None


def error_body(message: str, err_type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


class SlidingWindowLimiter:
    """Requests and tokens per key over a sliding 60 s window (what OpenAI's RPM/TPM limits mean)."""

    WINDOW_S = 60.0

    def __init__(self, rpm: int | None, tpm: int | None, window_s: float | None = None) -> None:
        """`window_s` < 60 quantizes the per-minute quotas: rpm * window_s / 60 per window."""
        self.window_s = window_s or self.WINDOW_S  # the class default is patched by the tests' short windows
        scale = window_s / 60.0 if window_s else 1.0
        self.rpm = None if rpm is None else max(1, int(rpm * scale))
        self.tpm = None if tpm is None else max(1, int(tpm * scale))
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}

    def _purge(self, key: str, now: float) -> None:
        horizon = now - self.window_s
        reqs = self._requests.setdefault(key, deque())
        while reqs and reqs[0] <= horizon:
            reqs.popleft()
        toks = self._tokens.setdefault(key, deque())
        while toks and toks[0][0] <= horizon:
            toks.popleft()

    def admit(self, key: str, tokens: int) -> int | None:
        """Record the request and return None, or return seconds to wait (>= 1) if over a limit."""
        now = time.monotonic()
        self._purge(key, now)
        reqs, toks = self._requests[key], self._tokens[key]
        waits: list[float] = []
        if self.rpm is not None and len(reqs) >= self.rpm:
            waits.append(reqs[0] + self.window_s - now)
        if self.tpm is not None and toks and sum(t for _, t in toks) + tokens > self.tpm:
            waits.append(toks[0][0] + self.window_s - now)
        if waits:
            return max(1, math.ceil(max(waits)))
        reqs.append(now)
        toks.append((now, tokens))
        return None

    def add_tokens(self, key: str, tokens: int) -> None:
        """Charge completion tokens once they are known."""
        self._tokens.setdefault(key, deque()).append((time.monotonic(), tokens))

    def reset(self) -> None:
        self._requests.clear()
        self._tokens.clear()


def malformed_content(good: str, rng: random.Random) -> str:
    """Content that is not valid JSON: the reply cut in half, or the answer as chatty prose."""
    if rng.random() < 0.5:
        return good[: max(1, len(good) // 2)]
    try:
        answer = json.loads(good).get("answer", "")
    except (json.JSONDecodeError, AttributeError):
        answer = ""
    return f"Sure! Let me think step by step. The answer is {answer}."


def corrupt_usage(usage: dict[str, int], rng: random.Random) -> dict[str, int] | None:
    """Usage that a careful client must not trust: missing (None) or negative counts."""
    if rng.random() < 0.5:
        return None
    return {key: -abs(value) - 1 for key, value in usage.items()}


class ConnectionResetSimulated(Exception):  # noqa: N818 - reads as an event, like ConnectionResetError
    """Raised after a partial body so that the server drops the connection."""


class ResetResponse(Response):
    """Sends the headers and half the body, then aborts: the client sees the connection drop.

    Uvicorn closes the socket when the app stops mid-body (FIN, not a TCP RST: the ASGI app has
    no access to the socket to set SO_LINGER). Clients see an incomplete body, as with a reset.
    """

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(content=json.dumps(payload), media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True}
        )
        raise ConnectionResetSimulated("simulated connection reset")


class SimulatedHeaderMiddleware:
    """Pure ASGI middleware: tags every response ``x-magdi-simulated: true``; quiets simulated resets."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), SIMULATED_HEADER]}
            await send(message)

        try:
            await self.app(scope, receive, tagged_send)
        except ConnectionResetSimulated:
            # returning without finishing the body makes uvicorn close the connection
            logger.info("simulated connection reset on %s", scope.get("path"))
