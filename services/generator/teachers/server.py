"""OpenAI-compatible HTTP front of the simulated teacher panel (SIMULATION, replays real outputs).

The generator talks to this server exactly as to OpenAI (``AsyncOpenAI(base_url=...)``), so the
retry, timeout and parsing paths exercised in tests and the demo are the production ones.
Every response carries ``x-magdi-simulated: true`` and completions carry
``system_fingerprint: "magdi-simulated-teacher"``.

Token counts are NOT a real tokenizer: a token is a run of word characters or one other
non-space character (``\\w+|[^\\w\\s]``), which is deterministic and close enough for quotas.

Requests whose prompt contains no recorded question still get a valid reply (answer
``"unknown"``, confidence 0.1, a reasoning that says why) and a logged warning: a real model
would answer too, and the generator must cope with a wrong answer, not a missing one.

``GET /v1/_sim/stats`` counts completions a correct client would accept as final (valid JSON
content, finish_reason "stop"), per (model, prompt SHA-256); tests use it to assert that no
request was completed twice. ``POST /v1/_sim/reset`` clears counters and rate windows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections import Counter
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse, Response

from services.generator.teachers.config import PanelSimConfig
from services.generator.teachers.faults import (
    ResetResponse,
    SimulatedHeaderMiddleware,
    SlidingWindowLimiter,
    corrupt_usage,
    draw_fault,
    error_response,
    malformed_content,
)
from services.generator.teachers.policy import DiscussionPolicy
from services.generator.teachers.replay import ReplayBank

logger = logging.getLogger(__name__)

SYSTEM_FINGERPRINT = "magdi-simulated-teacher"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: word runs and single punctuation marks."""
    return len(_TOKEN.findall(text))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if self.content is None:
            return ""
        return "\n".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat-completions body the panel reads; unknown keys are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)  # accepted, ignored: replies are replayed
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    n: int | None = Field(None, ge=1, le=1)
    stream: bool | None = None


class SimStats:
    """Counters behind /v1/_sim/stats."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.requests = 0
        self.completions: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[str] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()

    def as_json(self) -> dict[str, Any]:
        by_model: Counter[str] = Counter()
        for (model, _), n in self.completions.items():
            by_model[model] += n
        return {
            "requests": self.requests,
            "completions": sum(self.completions.values()),
            "by_model": dict(by_model),
            "by_prompt": [
                {"model": m, "prompt_sha256": h, "count": n} for (m, h), n in sorted(self.completions.items())
            ],
            "max_completions_per_prompt": max(self.completions.values(), default=0),
            "repeated_prompts": sum(1 for n in self.completions.values() if n > 1),
            "faults": dict(self.faults),
        }


def create_app(config: PanelSimConfig, bank: ReplayBank | None = None) -> FastAPI:
    """Build the panel app. `bank` may be passed to share one loaded bank between apps."""
    bank = bank if bank is not None else ReplayBank.load(config.solutions_path, config.questions_path)
    policy = DiscussionPolicy(config.seed, config.switch_k, config.switch_bias, config.confidence_jitter)
    model_names = [*config.served_models(), *config.aliases]
    settings = {name: config.for_model(name) for name in model_names}  # per_model overrides applied
    limiters = {name: SlidingWindowLimiter(cfg.rpm_limit, cfg.tpm_limit) for name, cfg in settings.items()}
    stats = SimStats()
    app = FastAPI(title="magdi simulated teacher panel (SIMULATION)", docs_url=None, redoc_url=None)
    app.add_middleware(SimulatedHeaderMiddleware)
    app.state.config, app.state.bank, app.state.stats = config, bank, stats

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "magdi-simulation"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in model_names]}

    @app.get("/v1/models/{name}", response_model=None)
    async def get_model(name: str) -> dict[str, Any] | JSONResponse:
        if name not in model_names:
            return _unknown_model(name)
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
        try:
            body = ChatCompletionRequest.model_validate(json.loads(await request.body()))
        except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
            stats.faults["bad_request"] += 1
            return error_response(
                400, f"invalid request body: {_short(exc)}", "invalid_request_error", "invalid_body"
            )
        if body.stream:
            stats.faults["bad_request"] += 1
            return error_response(
                400,
                "stream=true is not supported by the simulated panel",
                "invalid_request_error",
                "unsupported_parameter",
            )
        recorded_model = config.resolve(body.model)
        if recorded_model is None:
            stats.faults["unknown_model"] += 1
            return _unknown_model(body.model)
        if body.model in config.down_models or recorded_model in config.down_models:
            stats.faults["down"] += 1
            return error_response(
                503, f"model {body.model} is unavailable (simulated outage)", "server_error", "model_down"
            )

        cfg, limiter = settings[body.model], limiters[body.model]
        prompt = "\n".join(m.text() for m in body.messages)
        prompt_sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        prompt_tokens = count_tokens(prompt)
        wait_s = limiter.admit(body.model, prompt_tokens)
        if wait_s is not None:
            stats.faults["rate_limited"] += 1
            headers = {"retry-after": str(wait_s)} if cfg.retry_after_header else None
            return error_response(
                429,
                f"Rate limit reached for {body.model} (simulated)",
                "rate_limit_error",
                "rate_limit_exceeded",
                headers,
            )

        stats.attempts[(body.model, prompt_sha)] += 1
        attempt = stats.attempts[(body.model, prompt_sha)]
        rng = random.Random(f"{config.seed}|{body.model}|{prompt_sha}|{attempt}")
        if cfg.latency_s or cfg.latency_jitter_s:
            await asyncio.sleep(cfg.latency_s + rng.uniform(0, cfg.latency_jitter_s))
        fault = draw_fault(cfg, rng)
        if fault == "error":
            stats.faults["server_error"] += 1
            status = rng.choice([500, 502, 503])
            return error_response(
                status,
                "The server had an error while processing your request (simulated).",
                "server_error",
                None,
            )
        if fault == "timeout":
            stats.faults["hang"] += 1
            if await _hang(request, cfg.hang_s):
                stats.faults["abandoned"] += 1
                return Response(status_code=499)

        question = bank.find(prompt)
        if question is None:
            stats.faults["unknown_question"] += 1
            logger.warning("no recorded question in the prompt for %s; answering 'unknown'", body.model)
            debate_text = prompt
        else:
            debate_text = prompt[bank.question_end(prompt, question) :]
        reply = policy.reply(recorded_model, question, debate_text)
        content = reply.render()
        finish_reason = "stop"
        limit = body.max_completion_tokens or body.max_tokens
        if limit is not None and count_tokens(content) > limit:
            content = _cut_tokens(content, limit)
            finish_reason = "length"
            stats.faults["length"] += 1
        if fault == "malformed":
            content = malformed_content(content, rng)
        elif fault == "empty":
            content = ""
        completion_tokens = count_tokens(content)
        limiter.add_tokens(body.model, completion_tokens)
        usage: dict[str, int] | None = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if fault == "wrong_usage":
            usage = corrupt_usage(usage, rng)
        payload: dict[str, Any] = {
            "id": f"chatcmpl-sim-{hashlib.sha256(f'{prompt_sha}|{attempt}'.encode()).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }
        if usage is not None:
            payload["usage"] = usage
        if fault in ("malformed", "empty", "truncated_body", "wrong_usage", "reset"):
            stats.faults[fault] += 1
        if fault == "truncated_body":
            text = json.dumps(payload)
            return Response(text[: len(text) // 2], status_code=200, media_type="application/json")
        if fault == "reset":
            return ResetResponse(payload)
        if fault not in ("malformed", "empty") and finish_reason == "stop":
            stats.completions[(body.model, prompt_sha)] += 1
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


def _cut_tokens(text: str, limit: int) -> str:
    """The prefix of `text` holding its first `limit` tokens (as a max_tokens cut would)."""
    for i, match in enumerate(_TOKEN.finditer(text), start=1):
        if i == limit:
            return text[: match.end()]
    return text


def _unknown_model(name: str) -> JSONResponse:
    return error_response(
        404,
        f"The model `{name}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    return str(exc)[:200]


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
