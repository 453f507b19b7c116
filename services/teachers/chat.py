"""The replay behind a chat completion (SIMULATION), shared by `/v1/chat/completions` and batch lines.

A request sent on its own and the same request sent as a line of a batch input file meet the same
steps here: body validation, model resolution, the seeded attempt (fault draws), the discussion
policy's reply, and the same counters in `SimStats`. What differs stays with the caller: only a
direct request meets the RPM/TPM quota, latency, hangs and transport faults (cut bodies, resets),
because a batch has no connection to cut and its own quota pool.

Token counts are NOT a real tokenizer: a token is a run of word characters or one other
non-space character (``\\w+|[^\\w\\s]``), which is deterministic and close enough for quotas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from services.teachers.config import PanelSimConfig
from services.teachers.faults import corrupt_usage, draw_fault, error_body, malformed_content
from services.teachers.policy import DiscussionPolicy
from services.teachers.replay import ReplayBank

logger = logging.getLogger(__name__)

SYSTEM_FINGERPRINT = "magdi-simulated-teacher"
_TOKEN = re.compile(r"\w+|[^\w\s]")
# faults of the connection, not of the content: a batch line has no connection, so they do not apply
TRANSPORT_FAULTS = frozenset({"timeout", "truncated_body", "reset"})
# the content faults a client must not accept as a final answer (not counted as completions)
UNUSABLE = frozenset({"malformed", "empty", "truncated_body", "reset"})


def count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: word runs and single punctuation marks."""
    return len(_TOKEN.findall(text))


def cut_tokens(text: str, limit: int) -> str:
    """The prefix of `text` holding its first `limit` tokens (as a max_tokens cut would)."""
    for i, match in enumerate(_TOKEN.finditer(text), start=1):
        if i == limit:
            return text[: match.end()]
    return text


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
    """Counters behind /v1/_sim/stats (direct requests and batch lines alike)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.requests = 0
        self.batch_lines = 0
        self.completions: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[str] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()

    def as_json(self) -> dict[str, Any]:
        by_model: Counter[str] = Counter()
        for (model, _), n in self.completions.items():
            by_model[model] += n
        return {
            "requests": self.requests,
            "batch_lines": self.batch_lines,
            "completions": sum(self.completions.values()),
            "by_model": dict(by_model),
            "by_prompt": [
                {"model": m, "prompt_sha256": h, "count": n} for (m, h), n in sorted(self.completions.items())
            ],
            "max_completions_per_prompt": max(self.completions.values(), default=0),
            "repeated_prompts": sum(1 for n in self.completions.values() if n > 1),
            "faults": dict(self.faults),
        }


@dataclass(frozen=True)
class Refusal:
    """An answer in OpenAI's error shape: HTTP status plus ``{"error": {...}}``."""

    status: int
    message: str
    type: str
    code: str | None = None
    headers: dict[str, str] | None = None

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


@dataclass
class Turn:
    """One admitted chat request: the served and recorded model, its prompt, then its attempt's draws."""

    body: ChatCompletionRequest
    recorded_model: str
    prompt: str
    prompt_sha: str
    prompt_tokens: int
    attempt: int = 0
    rng: random.Random | None = None
    fault: str | None = None


class ChatReplay:
    """Turns chat requests into replayed completions; owns the policy and updates `stats`."""

    def __init__(self, config: PanelSimConfig, bank: ReplayBank, stats: SimStats) -> None:
        self.config, self.bank, self.stats = config, bank, stats
        self.policy = DiscussionPolicy(config.seed, config.switch_k, config.switch_bias, config.confidence_jitter)
        self.model_names = [*config.served_models(), *config.aliases]
        self.settings = {name: config.for_model(name) for name in self.model_names}  # per_model overrides

    def admit(self, raw: bytes | Mapping[str, Any]) -> Turn | Refusal:
        """Validate a body and resolve its model; a Refusal (400/404/503) says what was wrong."""
        try:
            data = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
            body = ChatCompletionRequest.model_validate(data)
        except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
            self.stats.faults["bad_request"] += 1
            return Refusal(400, f"invalid request body: {_short(exc)}", "invalid_request_error", "invalid_body")
        if body.stream:
            self.stats.faults["bad_request"] += 1
            return Refusal(400, "stream=true is not supported by the simulated panel", "invalid_request_error",
                           "unsupported_parameter")
        recorded_model = self.config.resolve(body.model)
        if recorded_model is None:
            self.stats.faults["unknown_model"] += 1
            return unknown_model(body.model)
        if body.model in self.config.down_models or recorded_model in self.config.down_models:
            self.stats.faults["down"] += 1
            return Refusal(503, f"model {body.model} is unavailable (simulated outage)", "server_error",
                           "model_down")
        prompt = "\n".join(m.text() for m in body.messages)
        return Turn(body, recorded_model, prompt, hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
                    count_tokens(prompt))

    def attempt(self, turn: Turn) -> random.Random:
        """Count the attempt; its RNG is seeded by (seed, model, prompt, attempt number)."""
        key = (turn.body.model, turn.prompt_sha)
        self.stats.attempts[key] += 1
        turn.attempt = self.stats.attempts[key]
        turn.rng = random.Random(f"{self.config.seed}|{turn.body.model}|{turn.prompt_sha}|{turn.attempt}")
        return turn.rng

    def draw_fault(self, turn: Turn, *, transport: bool = True) -> str | None:
        """The attempt's fault (None: a clean answer); `transport=False` drops the connection faults."""
        assert turn.rng is not None
        fault = draw_fault(self.settings[turn.body.model], turn.rng)
        turn.fault = None if not transport and fault in TRANSPORT_FAULTS else fault
        return turn.fault

    def server_error(self, turn: Turn) -> Refusal:
        assert turn.rng is not None
        self.stats.faults["server_error"] += 1
        return Refusal(turn.rng.choice([500, 502, 503]),
                       "The server had an error while processing your request (simulated).", "server_error")

    def complete(self, turn: Turn) -> dict[str, Any]:
        """The chat.completion object for an admitted, drawn turn (content faults applied, counted)."""
        assert turn.rng is not None
        body, stats = turn.body, self.stats
        question = self.bank.find(turn.prompt)
        if question is None:
            stats.faults["unknown_question"] += 1
            logger.warning("no recorded question in the prompt for %s; answering 'unknown'", body.model)
            debate_text = turn.prompt
        else:
            debate_text = turn.prompt[self.bank.question_end(turn.prompt, question) :]
        content = self.policy.reply(turn.recorded_model, question, debate_text).render()
        finish_reason = "stop"
        limit = body.max_completion_tokens or body.max_tokens
        if limit is not None and count_tokens(content) > limit:
            content = cut_tokens(content, limit)
            finish_reason = "length"
            stats.faults["length"] += 1
        if turn.fault == "malformed":
            content = malformed_content(content, turn.rng)
        elif turn.fault == "empty":
            content = ""
        completion_tokens = count_tokens(content)
        usage: dict[str, int] | None = {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": turn.prompt_tokens + completion_tokens,
        }
        if turn.fault == "wrong_usage":
            usage = corrupt_usage(usage, turn.rng)
        digest = hashlib.sha256(f"{turn.prompt_sha}|{turn.attempt}".encode()).hexdigest()[:24]
        payload: dict[str, Any] = {
            "id": f"chatcmpl-sim-{digest}",
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
        if turn.fault in ("malformed", "empty", "truncated_body", "wrong_usage", "reset"):
            stats.faults[turn.fault] += 1
        if turn.fault not in UNUSABLE and finish_reason == "stop":
            stats.completions[(body.model, turn.prompt_sha)] += 1
        return payload


def completion_tokens(payload: dict[str, Any]) -> int:
    """Completion tokens to charge to a TPM window (counted from the content when usage is corrupt)."""
    return count_tokens(payload["choices"][0]["message"]["content"] or "")


def unknown_model(name: str) -> Refusal:
    return Refusal(404, f"The model `{name}` does not exist or you do not have access to it.",
                   "invalid_request_error", "model_not_found")


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    return str(exc)[:200]
