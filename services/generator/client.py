"""Calls to OpenAI-compatible endpoints: one shared `AsyncOpenAI` per (base URL, key), with our own
retries (the SDK's are off: `max_retries=0`) so that every retry also goes through the endpoint's
rate limiter, circuit breaker and accounting; plus the preflight check run before a job starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import openai

from magdi.errors import UserError
from magdi.panel import AgentConfig, PanelConfig
from magdi.redact import RedactSecrets
from magdi.store.quota import endpoint_id
from services.generator.limits import (
    CircuitBreaker,
    EndpointDown,
    EndpointLimiter,
    retry_delay,
    should_retry,
)

logger = logging.getLogger(__name__)

Message = dict[str, str]
CHARS_PER_TOKEN = 4  # rough prompt-size estimate for the token bucket, corrected from `usage`


def prompt_text(messages: Sequence[Message]) -> str:
    return "\n".join(m["content"] for m in messages)


def prompt_hash(messages: Sequence[Message]) -> str:
    """SHA-256 of the message contents joined by newlines (what the simulated panel counts by)."""
    return hashlib.sha256(prompt_text(messages).encode("utf-8")).hexdigest()


@dataclass
class CallResult:
    """One turn's call, retries included. `text` is None when the call failed (`error` says why)."""

    text: str | None = None
    finish_reason: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_s: float | None = None
    attempts: int = 0
    cost_usd: float | None = None
    error: str | None = None

    def merge(self, later: CallResult) -> CallResult:
        """This call followed by `later` (a re-ask): usage and attempts add up."""
        def add(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a + b

        return CallResult(
            text=later.text, finish_reason=later.finish_reason,
            tokens_in=add(self.tokens_in, later.tokens_in),  # type: ignore[arg-type]
            tokens_out=add(self.tokens_out, later.tokens_out),  # type: ignore[arg-type]
            latency_s=later.latency_s, attempts=self.attempts + later.attempts,
            cost_usd=add(self.cost_usd, later.cost_usd), error=later.error,
        )


def _usage(completion: object) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens, or Nones when the endpoint sent no or nonsensical usage."""
    usage = getattr(completion, "usage", None)
    tin, tout = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
    if isinstance(tin, int) and isinstance(tout, int) and tin >= 0 and tout >= 0:
        return tin, tout
    if usage is not None:
        logger.debug("ignoring invalid usage %r", usage)
    return None, None


class Endpoint:
    """One (base URL, model, key): its limiter, breaker and the calls made through it."""

    def __init__(self, agent: AgentConfig, client: openai.AsyncOpenAI, rng: random.Random,
                 redactor: RedactSecrets | None = None) -> None:
        self.name = f"{agent.model} at {agent.base_url}"
        self.quota_id = endpoint_id(*agent.endpoint_key)  # shared with other processes via magdi.store.quota
        self.redactor = redactor or RedactSecrets()  # errors end up in the graph: no key in them
        self.limiter = EndpointLimiter(agent.limits)
        self.breaker = CircuitBreaker(agent.breaker, name=self.name)
        self.client = client
        self.rng = rng
        self.calls = 0
        self.failures = 0
        self.retries = 0  # re-sent after a 5xx, timeout, reset or cut body
        self.rate_limit_waits = 0  # 429s waited out

    async def complete(self, agent: AgentConfig, messages: Sequence[Message]) -> CallResult:
        """Chat completion with retries; never raises for endpoint trouble (see CallResult.error)."""
        result = CallResult()
        retries = rate_waits = 0
        estimate = len(prompt_text(messages)) // CHARS_PER_TOKEN + agent.max_tokens
        while True:
            headers: dict[str, str] | None = None
            async with self.limiter.slots:
                try:
                    await self.breaker.before_call()
                except EndpointDown as exc:
                    result.error = str(exc)
                    return result
                await self.limiter.acquire(estimate)
                result.attempts += 1
                self.calls += 1
                start = time.monotonic()
                try:
                    completion = await self.client.chat.completions.create(
                        model=agent.model, messages=list(messages),  # type: ignore[arg-type]
                        max_tokens=agent.max_tokens,
                        **({"temperature": agent.temperature} if agent.temperature is not None else {}),
                    )
                except openai.APIStatusError as exc:
                    status, headers = exc.status_code, dict(exc.response.headers)
                    error = self.redactor.redact(f"HTTP {status}: {_short(exc)}")
                    self.limiter.settle(estimate, 0)
                    if status == 429:
                        self.breaker.release_probe()
                        if rate_waits >= agent.backoff.max_rate_limit_waits or not should_retry(
                                status, headers, agent.backoff):
                            result.error = error
                            return result
                        delay = retry_delay(rate_waits, headers, agent.backoff, self.rng)
                        rate_waits += 1
                        self.rate_limit_waits += 1
                        logger.debug("%s: 429, pausing the endpoint %.2f s", self.name, delay)
                        self.limiter.pause(delay)
                        continue
                    retryable = should_retry(status, headers, agent.backoff)
                    if status >= 500 or status in (408, 409):
                        self._failed(error)
                    else:
                        self.breaker.release_probe()
                    if not retryable:
                        result.error = error
                        return result
                except (openai.APIConnectionError, openai.APIResponseValidationError, httpx.HTTPError,
                        json.JSONDecodeError) as exc:
                    # timeouts, resets and 200s with a cut body: the request may be retried as is
                    error = self.redactor.redact(f"{type(exc).__name__}: {_short(exc)}")
                    self.limiter.settle(estimate, 0)
                    self._failed(error)
                except asyncio.CancelledError:
                    self.breaker.release_probe()
                    raise
                else:
                    latency = time.monotonic() - start
                    self.breaker.record_success()
                    tin, tout = _usage(completion)
                    self.limiter.settle(estimate, None if tin is None else tin + (tout or 0))
                    choice = completion.choices[0] if completion.choices else None
                    result.text = (choice.message.content if choice else None) or ""
                    result.finish_reason = choice.finish_reason if choice else None
                    result.tokens_in, result.tokens_out, result.latency_s = tin, tout, latency
                    result.cost_usd = agent.price.cost(tin, tout)
                    return result
            if retries >= agent.max_retries:
                result.error = f"{error} (gave up after {result.attempts} attempts)"
                return result
            delay = retry_delay(retries, headers, agent.backoff, self.rng)
            retries += 1
            self.retries += 1
            logger.debug("%s: %s; retry %d in %.2f s", self.name, error, retries, delay)
            await asyncio.sleep(delay)

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.breaker.record_failure(error)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


class Endpoints:
    """All endpoints of a panel, keyed by agent name; clients shared per (base URL, key)."""

    def __init__(self, panel: PanelConfig, keys: dict[str, str], *, seed: int | None = None) -> None:
        rng = random.Random(seed)
        redactor = RedactSecrets(keys.values())
        self._clients: dict[tuple[str, str | None], openai.AsyncOpenAI] = {}
        self._endpoints: dict[tuple[str, str, str | None], Endpoint] = {}
        self.by_agent: dict[str, Endpoint] = {}
        for agent in panel.agents:
            client_key = (agent.base_url, agent.api_key_env)
            if client_key not in self._clients:
                timeout = httpx.Timeout(agent.timeout_s, connect=min(agent.timeout_s, 10.0))
                self._clients[client_key] = openai.AsyncOpenAI(
                    base_url=agent.base_url, api_key=keys[agent.name], max_retries=0, timeout=timeout,
                    # no redirects: a declared endpoint must not be able to send prompts somewhere else
                    http_client=httpx.AsyncClient(timeout=timeout, follow_redirects=False),
                )
            if agent.endpoint_key not in self._endpoints:
                self._endpoints[agent.endpoint_key] = Endpoint(agent, self._clients[client_key], rng, redactor)
            self.by_agent[agent.name] = self._endpoints[agent.endpoint_key]

    def all(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    def down(self) -> dict[str, str]:
        """Endpoints given up on during this run, with their last error."""
        return {e.name: e.breaker.last_error or "down" for e in self.all() if e.breaker.down}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()


class PreflightError(UserError):
    """An endpoint is unreachable, refuses the key, or does not serve a model the panel names."""

    def __init__(self, message: str, endpoints: list[str]) -> None:
        super().__init__(message)
        self.endpoints = endpoints  # declared names or base URLs of the endpoints that failed


async def _check_group(base_url: str, key: str, agents: list[AgentConfig], timeout_s: float) -> list[str]:
    url = f"{base_url}/models"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http:
            response = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return [f"  {url}: unreachable ({type(exc).__name__}: {_short(exc, 120)})"]
    if response.status_code in (401, 403):
        return [f"  {url}: the key was refused (HTTP {response.status_code}); check "
                f"{', '.join(sorted({a.api_key_env or '-' for a in agents}))}"]
    if response.status_code != 200:
        return [f"  {url}: HTTP {response.status_code}, expected 200 with a model list"]
    try:
        data = response.json()
        ids = {str(m["id"]) for m in data["data"]}
    except (ValueError, KeyError, TypeError):
        return [f"  {url}: answered with something that is not an OpenAI model list"]
    return [f"  agent {a.name!r}: model {a.model!r} is not served at {base_url} (it lists {len(ids)} models"
            + (f", e.g. {', '.join(sorted(ids)[:5])})" if ids else ")")
            for a in agents if a.model not in ids]


async def preflight(panel: PanelConfig, keys: dict[str, str], timeout_s: float = 5.0) -> None:
    """GET /models once per (base URL, key) and check every model is listed; PreflightError otherwise."""
    groups: dict[tuple[str, str], list[AgentConfig]] = {}
    for agent in panel.agents:
        if agent.preflight:
            groups.setdefault((agent.base_url, keys[agent.name]), []).append(agent)
    results = await asyncio.gather(*(_check_group(url, key, agents, timeout_s)
                                     for (url, key), agents in groups.items()))
    problems = [line for lines in results for line in lines]
    if problems:
        failed = [agents[0].endpoint or url for ((url, _), agents), lines in zip(groups.items(), results, strict=True)
                  if lines]
        raise PreflightError("endpoint preflight failed (no paid call was made)\n" + "\n".join(problems),
                             sorted(set(failed)))
