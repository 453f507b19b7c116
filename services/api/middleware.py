"""One pure-ASGI middleware for what every request needs: id, size limit, metrics, access log.

Pure ASGI rather than `BaseHTTPMiddleware` so streamed exports pass through chunk by chunk and
the body limit applies while the body arrives (a chunked upload without Content-Length is cut
at the limit too, not after it was buffered).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.observability import Metrics, request_id_var

log = logging.getLogger("services.api.access")

REQUEST_ID_HEADER = "x-request-id"
SCOPE_KEY = "magdi.request_id"  # for handlers that run outside this middleware (Starlette's 500 handler)
_VALID_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def request_id_from(scope: Scope) -> str:
    """The caller's X-Request-ID when it is sane (it is echoed and logged), else a fresh one."""
    for key, value in scope.get("headers", []):
        if key == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if _VALID_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"  # raw paths would explode label cardinality


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, detail=f"request body larger than {limit} bytes")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, body_limit: Callable[[str], int]) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope)
        scope[SCOPE_KEY] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500
        limit = self.body_limit(scope["path"])
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(message)

        try:
            if self._declared_length(scope) > limit:
                await self._reject(send_with_id, 413, str(_too_large(limit).detail))
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.observe(scope["method"], route, status, elapsed)
            log.info("%s %s %s", scope["method"], scope["path"], status,
                     extra={"method": scope["method"], "route": route, "path": scope["path"], "status": status,
                            "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    @staticmethod
    async def _reject(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
