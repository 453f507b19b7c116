"""OpenAI-compatible HTTP front of the simulated teacher panel (SIMULATION, replays real outputs).

The generator talks to this server exactly as to OpenAI (``AsyncOpenAI(base_url=...)``), so the
retry, timeout and parsing paths exercised in tests and the demo are the production ones.
Every response carries ``x-magdi-simulated: true`` and completions carry
``system_fingerprint: "magdi-simulated-teacher"``.

It also speaks OpenAI's Batch API (``/v1/files``, ``/v1/batches``; see `batches`): a line of a
batch input file is answered by the same replay (`chat.ChatReplay`) as a direct request.

Requests whose prompt contains no recorded question still get a valid reply (answer
``"unknown"``, confidence 0.1, a reasoning that says why) and a logged warning: a real model
would answer too, and the generator must cope with a wrong answer, not a missing one.

``GET /v1/_sim/stats`` counts completions a correct client would accept as final (valid JSON
content, finish_reason "stop"), per (model, prompt SHA-256); tests use it to assert that no
request was completed twice. ``POST /v1/_sim/reset`` clears counters and rate windows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from services.teachers.batches import BatchBook, FileStore, batch_router
from services.teachers.chat import (
    ChatReplay,
    Refusal,
    SimStats,
    completion_tokens,
    unknown_model,
)
from services.teachers.config import PanelSimConfig
from services.teachers.faults import ResetResponse, SimulatedHeaderMiddleware, SlidingWindowLimiter
from services.teachers.replay import ReplayBank

logger = logging.getLogger(__name__)


def create_app(config: PanelSimConfig, bank: ReplayBank | None = None) -> FastAPI:
    """Build the panel app. `bank` may be passed to share one loaded bank between apps."""
    bank = bank if bank is not None else ReplayBank.load(config.solutions_path, config.questions_path)
    stats = SimStats()
    replay = ChatReplay(config, bank, stats)
    model_names = replay.model_names
    limiters = {name: SlidingWindowLimiter(cfg.rpm_limit, cfg.tpm_limit, cfg.rate_window_s)
                for name, cfg in replay.settings.items()}
    app = FastAPI(title="magdi simulated teacher panel (SIMULATION)", docs_url=None, redoc_url=None)
    app.add_middleware(SimulatedHeaderMiddleware)
    app.state.config, app.state.bank, app.state.stats = config, bank, stats
    files = FileStore()
    app.include_router(batch_router(config, files, BatchBook(config, replay, files)))

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "magdi-simulation"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in model_names]}

    @app.get("/v1/models/{name}", response_model=None)
    async def get_model(name: str) -> dict[str, Any] | JSONResponse:
        if name not in model_names:
            return unknown_model(name).response()
        return model_card(name)

    @app.get("/v1/_sim/stats")
    async def get_stats() -> dict[str, Any]:
        return stats.as_json()

    @app.post("/v1/_sim/reset")
    async def reset_stats() -> dict[str, Any]:
        stats.clear()
        for limiter in limiters.values():
            limiter.reset()
        return {"reset": True}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        stats.requests += 1
        turn = replay.admit(await request.body())
        if isinstance(turn, Refusal):
            return turn.response()
        model = turn.body.model
        cfg, limiter = replay.settings[model], limiters[model]
        wait_s = limiter.admit(model, turn.prompt_tokens)
        if wait_s is not None:
            stats.faults["rate_limited"] += 1
            headers = {"retry-after": str(wait_s)} if cfg.retry_after_header else None
            return Refusal(429, f"Rate limit reached for {model} (simulated)", "rate_limit_error",
                           "rate_limit_exceeded", headers).response()
        rng = replay.attempt(turn)
        if cfg.latency_s or cfg.latency_jitter_s:
            await asyncio.sleep(cfg.latency_s + rng.uniform(0, cfg.latency_jitter_s))
        fault = replay.draw_fault(turn)
        if fault == "error":
            return replay.server_error(turn).response()
        if fault == "timeout":
            stats.faults["hang"] += 1
            if await _hang(request, cfg.hang_s):
                stats.faults["abandoned"] += 1
                return Response(status_code=499)
        payload = replay.complete(turn)
        limiter.add_tokens(model, completion_tokens(payload))
        if fault == "truncated_body":
            text = json.dumps(payload)
            return Response(text[: len(text) // 2], status_code=200, media_type="application/json")
        if fault == "reset":
            return ResetResponse(payload)
        return JSONResponse(payload)

    return app


async def _hang(request: Request, hang_s: float) -> bool:
    """Sleep up to `hang_s`; True if the client went away meanwhile (its reply is then abandoned)."""
    deadline = time.monotonic() + hang_s
    while time.monotonic() < deadline:
        await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        if await request.is_disconnected():
            return True
    return False


def serve(
    config: PanelSimConfig,
    host: str = "127.0.0.1",
    port: int = 8901,
    *,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Run the panel in the foreground (what `magdi teachers serve` and `python -m` call)."""
    app = create_app(config)
    logger.warning("serving the SIMULATED teacher panel (replayed outputs) on http://%s:%d/v1", host, port)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=2
    )
