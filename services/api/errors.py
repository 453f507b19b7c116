"""Exception handlers: every failure leaves as a JSON 4xx/5xx with a reason, never a bare traceback.

- request validation -> 422 naming the field; HTTPException -> its status and detail;
- text that is not valid Unicode (lone surrogates, legal as JSON escapes) -> 400;
- Neo4j unreachable or transiently failing -> 503 with Retry-After, so clients back off;
- a store query past its timeout -> 503 (the filters were too broad for the server's budget);
- anything else -> 500 with the request id, logged with its traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired, TransientError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.middleware import SCOPE_KEY

log = logging.getLogger(__name__)
RETRY_AFTER_S = "5"


class AsciiJSONResponse(JSONResponse):
    """Error bodies echo client input, which may hold lone surrogates (valid JSON escapes, but not
    encodable as UTF-8): escaping everything non-ASCII keeps those a 4xx instead of a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"),
                          default=str).encode("ascii")


def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """Name the field and the rule, but never echo the rejected input: it may hold a secret."""
    errors = [{k: v for k, v in err.items() if k not in ("input", "ctx", "url")} for err in exc.errors()]
    return AsciiJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return AsciiJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _bad_text(request: Request, exc: UnicodeEncodeError) -> Response:
    log.info("refused text that is not valid Unicode in %s %s", request.method, request.url.path)
    return AsciiJSONResponse({"detail": "the request holds text that is not valid Unicode (a lone surrogate)"},
                             status_code=400)


def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("Neo4j unavailable during %s %s: %s", request.method, request.url.path, exc.__class__.__name__)
    return AsciiJSONResponse({"detail": "the graph database is unavailable; retry shortly"}, status_code=503,
                             headers={"Retry-After": RETRY_AFTER_S})


def _database_error(request: Request, exc: Neo4jError) -> Response:
    if "TransactionTimedOut" in (exc.code or ""):
        return AsciiJSONResponse({"detail": "the query took too long; narrow the filters"}, status_code=503,
                                 headers={"Retry-After": RETRY_AFTER_S})
    return _internal(request, exc)


def _internal(request: Request, exc: Exception) -> Response:
    rid = request.scope.get(SCOPE_KEY)  # Starlette runs this handler outside our middleware
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc, extra={"request_id": rid})
    return AsciiJSONResponse({"detail": "internal error", "request_id": rid}, status_code=500,
                             headers={"X-Request-ID": rid} if rid else None)


def install(app: FastAPI) -> None:
    handlers: list[tuple[type[Exception], Any]] = [
        (RequestValidationError, _validation_error),
        (StarletteHTTPException, _http_error),
        (UnicodeEncodeError, _bad_text),
        (ServiceUnavailable, _unavailable),
        (SessionExpired, _unavailable),
        (TransientError, _unavailable),
        (Neo4jError, _database_error),
        (Exception, _internal),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)
