"""The panel schema: who sits at the table, where each agent runs, and what its calls may cost.

One schema for every way a panel arrives: a YAML file (`magdi generate --panel`), a job spec read
back from Neo4j (the worker) and a request body (`POST /v1/jobs`, `POST /v1/debates`). It is
strict (an unknown key is an error naming it), so a typo is a message and not a half-paid job.

An agent reaches its model in one of two ways:

- `endpoint: NAME`, an endpoint the operator declared in the server configuration
  (`magdi.policy`); the operator's declaration supplies the base URL, the key variable, limits,
  prices and retries. API callers can only do this.
- `base_url` (+ `api_key_env`), written by the operator in a panel file for `magdi generate`.

The key itself is never part of the config: only the NAME of the environment variable that holds
it travels into the job spec and the graph, and the value is read from the environment of the
process that makes the calls (`resolve_keys`). Variables named `MAGDI_*` (the project's own
secrets: Neo4j password, API token) are refused as key variables everywhere.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from magdi.config_loading import Location, dotted, read_yaml, validate
from magdi.errors import UserError

if TYPE_CHECKING:
    from magdi.mag import Agent

logger = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost", "host.docker.internal"})
PLACEHOLDER_KEY = "EMPTY"  # what vLLM/Ollama accept when they run without a key


class PanelError(UserError):
    """The panel file is unusable; the message names the file, the agent and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Evolving(_Strict):
    """A model that gained fields after job specs were first stored (`ADDED_LATER`).

    A dump leaves each such field out while it holds its default, so the dump of a spec written
    before the field existed, and with it the job's `config_hash` (a digest of that dump), stays
    what it was: the job still resumes. Add a new field's name here when it joins such a model.
    """

    ADDED_LATER: ClassVar[frozenset[str]] = frozenset()

    def _without_added_defaults(self, data: dict[str, Any]) -> dict[str, Any]:
        for name in self.ADDED_LATER:
            if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                data.pop(name, None)
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return self._without_added_defaults(handler(self))


class Limits(_Evolving):
    """Client-side quotas of one endpoint (base URL + model + key); None = unlimited."""

    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens (prompt + completion) per minute")
    max_in_flight: int = Field(16, ge=1, description="concurrent requests")
    window_s: float = Field(60.0, gt=0, le=60, description=(
        "the window over which the provider enforces rpm/tpm: 60 = a sliding minute; 1 = per second, "
        "as providers that quantize per-minute limits do (rpm / 60 requests in any second)"))

    ADDED_LATER = frozenset({"window_s"})


class Price(_Evolving):
    """USD per 1,000 tokens; used to record `cost_usd` on every node.

    Providers price their Batch API apart (OpenAI: half the synchronous price): `batch_*` are
    those prices, used for every turn a batch-mode job makes; unset, a batch costs what a direct
    call does (the safe assumption for the cost cap).
    """

    input_per_1k: float = Field(0.0, ge=0)
    output_per_1k: float = Field(0.0, ge=0)
    batch_input_per_1k: float | None = Field(None, ge=0, description="Batch API price; default: input_per_1k")
    batch_output_per_1k: float | None = Field(None, ge=0, description="Batch API price; default: output_per_1k")

    ADDED_LATER = frozenset({"batch_input_per_1k", "batch_output_per_1k"})

    def cost(self, tokens_in: int | None, tokens_out: int | None) -> float | None:
        if tokens_in is None or tokens_out is None:
            return None
        return tokens_in / 1000 * self.input_per_1k + tokens_out / 1000 * self.output_per_1k

    def for_batch(self) -> Price:
        """The price of a turn made through the Batch API (or an offline batch file)."""
        return Price(input_per_1k=_first(self.batch_input_per_1k, self.input_per_1k),
                     output_per_1k=_first(self.batch_output_per_1k, self.output_per_1k))


def _first(value: float | None, default: float) -> float:
    return default if value is None else value


class BatchLimits(_Strict):
    """A provider's limits per batch (OpenAI's: 50,000 requests and 200 MB per input file); a round
    larger than this goes out as several batches."""

    max_requests: int = Field(50_000, ge=1, description="requests per batch")
    max_bytes: int = Field(200 * 1024 * 1024, ge=1, description="bytes per batch input file")


class Backoff(_Strict):
    """Retry delays, shaped like openai-python's `_calculate_retry_timeout`."""

    initial_s: float = Field(0.5, gt=0, description="first delay; doubles per retry")
    max_s: float = Field(8.0, gt=0, description="cap of the exponential delay")
    max_retry_after_s: float = Field(120.0, gt=0, description="a longer Retry-After means: do not retry")
    max_rate_limit_waits: int = Field(50, ge=0, description="429 waits per turn (not counted as retries)")


class Breaker(_Strict):
    """Circuit breaker of one endpoint: pause it when it keeps failing, give up when it stays down."""

    failure_threshold: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    cooldown_s: float = Field(5.0, gt=0, description="first pause; doubles after each failed probe")
    max_cooldown_s: float = Field(60.0, gt=0)
    down_after_s: float = Field(300.0, gt=0, description="failing this long with no success = down for this run")


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
KEY_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_KEY_PREFIX = "MAGDI_"  # the project's own secrets (Neo4j password, API token) live here


class EndpointSettings(_Strict):
    """What the operator decides about an endpoint: where it is, its key variable, quotas, prices, retries.

    An agent bound to a declared endpoint (`endpoint: NAME`) takes all of these from the operator's
    declaration (`magdi.policy.Endpoint`); only a panel file run with `magdi generate` sets them inline.
    """

    base_url: str | None = Field(None, min_length=1, description="OpenAI-compatible base URL, e.g. "
                                 "https://api.openai.com/v1")
    api_key_env: str | None = Field(None, pattern=KEY_VAR_PATTERN,
                                    description="NAME of the env var holding the key; None for keyless local servers")
    timeout_s: float = Field(60.0, gt=0, description="per request")
    max_retries: int = Field(5, ge=0, description="retries after the first attempt (429 waits excluded)")
    backoff: Backoff = Field(default_factory=Backoff)
    breaker: Breaker = Field(default_factory=Breaker)
    limits: Limits = Field(default_factory=Limits)
    price: Price = Field(default_factory=Price)
    batch_limits: BatchLimits = Field(default_factory=BatchLimits, description="per-batch limits of its Batch API")
    preflight: bool = Field(True, description="check GET /models lists the model before the job starts")

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        if parts.username or parts.password or "key" in parts.query.lower():
            raise ValueError("credentials do not belong in base_url; put the key in the env var named by api_key_env")
        return url.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _not_ours(cls, name: str | None) -> str | None:
        if name is not None and name.upper().startswith(RESERVED_KEY_PREFIX):
            raise ValueError(f"{RESERVED_KEY_PREFIX}* variables hold magdi's own secrets (Neo4j password, API "
                             "token) and are never sent to an endpoint; name another variable")
        return name


# Fields an agent bound to a declared endpoint gets from the operator, never from the panel.
OPERATOR_FIELDS = frozenset(EndpointSettings.model_fields)
# What a panel chooses per seat, whoever wrote it.
SEAT_FIELDS = frozenset({"name", "model", "endpoint", "temperature", "max_tokens", "demos"})


class AgentConfig(EndpointSettings, _Evolving):
    """One seat: the name used in the graph, the model behind it, and the endpoint that serves it."""

    ADDED_LATER = frozenset({"batch_limits"})

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    model: str = Field(min_length=1, max_length=200)
    endpoint: str | None = Field(None, min_length=1, max_length=100, pattern=NAME_PATTERN,
                                 description="name of an endpoint declared by the operator (the only choice "
                                             "for API jobs); it supplies base_url, key, limits and prices")
    temperature: float | None = Field(None, ge=0, le=2, description="None = the endpoint's default (as ReConcile)")
    max_tokens: int = Field(1024, ge=1, description="completion cap per call")
    demos: str | None = Field(None, max_length=200,
                              description="convincing-samples file stem for this agent (default: name)")

    @model_validator(mode="after")
    def _one_way_to_the_model(self) -> AgentConfig:
        if self.endpoint is None and self.base_url is None:
            raise ValueError("name a declared endpoint (endpoint: NAME) or give base_url")
        if self.endpoint is not None and self.model_fields_set & {"base_url", "api_key_env"}:
            raise ValueError("an agent on a declared endpoint takes base_url and api_key_env from the operator's "
                             "declaration; remove them")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An agent on a declared endpoint is stored as the seat it chose (the operator's part is not
        the job's); an inline agent without the `endpoint` key, as before there were endpoints."""
        data: dict[str, Any] = handler(self)
        if self.endpoint is None:
            data.pop("endpoint", None)
            return self._without_added_defaults(data)
        keep = {"name", "model", "endpoint"} | (SEAT_FIELDS & self.model_fields_set)
        return {k: v for k, v in data.items() if k in keep}

    @property
    def is_local(self) -> bool:
        host = urlsplit(self.base_url or "").hostname or ""
        if host in LOCAL_HOSTS:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def endpoint_key(self) -> tuple[str, str, str | None]:
        """Agents with the same (base URL, model, key) share one quota, limiter and breaker."""
        return (self.base_url or f"endpoint:{self.endpoint}", self.model, self.api_key_env)

    @property
    def demos_key(self) -> str:
        return self.demos or self.name

    def as_agent(self) -> Agent:
        """The graph's view of the seat: a declared endpoint by its name, an inline one by its base URL."""
        from magdi.mag import Agent  # magdi.mag types JobSpec.panel with this module

        return Agent(name=self.name, model=self.model, endpoint=self.endpoint or self.base_url)


class PanelConfig(_Strict):
    """A whole panel. `defaults` are merged under every agent (an agent's own keys win)."""

    name: str = Field("panel", min_length=1, max_length=100)
    agents: list[AgentConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "defaults" not in data:
            return data
        data = dict(data)
        defaults = data.pop("defaults") or {}
        if not isinstance(defaults, dict):
            raise ValueError("defaults: expected a mapping")
        if "name" in defaults:
            raise ValueError("defaults: 'name' must be set per agent")
        agents = data.get("agents")
        if isinstance(agents, list):
            data["agents"] = [_deep_merge(defaults, a) if isinstance(a, dict) else a for a in agents]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PanelConfig:
        from magdi.mag import repeated  # magdi.mag types JobSpec.panel with this module

        dupes = repeated(a.name for a in self.agents)
        if dupes:
            raise ValueError(f"duplicate agent names: {', '.join(dupes)}")
        by_endpoint: dict[tuple[str, str, str | None], AgentConfig] = {}
        for agent in self.agents:
            if agent.endpoint is not None:
                continue  # its limits are the declared endpoint's
            first = by_endpoint.setdefault(agent.endpoint_key, agent)
            if first.limits != agent.limits:
                raise ValueError(
                    f"agents {first.name!r} and {agent.name!r} share an endpoint ({agent.model} at "
                    f"{agent.base_url}) but declare different limits; one quota cannot have two sizes"
                )
        return self

    def agent(self, name: str) -> AgentConfig:
        return next(a for a in self.agents if a.name == name)

    @property
    def agent_names(self) -> list[str]:
        return [a.name for a in self.agents]

    def public_dict(self) -> dict[str, Any]:
        """What the job spec and the graph may hold: everything here (keys are never in the model)."""
        return self.model_dump(mode="json")


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _label(data: Any) -> Callable[[Location], str]:
    """Problems of an agent are shown under its name (`agent 'a': temperature`), not its index."""

    def label(loc: Location) -> str:
        where = dotted(loc)
        if len(loc) >= 2 and loc[0] == "agents" and isinstance(loc[1], int):
            agents = data.get("agents") if isinstance(data, dict) else None
            agent = agents[loc[1]] if isinstance(agents, list) and loc[1] < len(agents) else None
            name = agent.get("name") if isinstance(agent, dict) else None
            if name:
                where = f"agent {name!r}: " + dotted(loc[2:])
        return where

    return label


def parse_panel(data: Any, source: str = "panel") -> PanelConfig:
    return validate(PanelConfig, data, source=source, what="panel config", error=PanelError, label=_label(data))


def load_panel(path: str | Path) -> PanelConfig:
    """Read and validate a panel YAML file; PanelError with every problem found."""
    return parse_panel(read_yaml(path, what="panel file", error=PanelError), str(path))


def resolve_keys(panel: PanelConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """API key per agent name, read from the environment; PanelError listing every missing one.

    A local endpoint (loopback or localhost) may run without a key: it gets a placeholder.
    """
    env = os.environ if env is None else env
    keys: dict[str, str] = {}
    missing: list[str] = []
    for agent in panel.agents:
        if agent.api_key_env is None:
            keys[agent.name] = PLACEHOLDER_KEY
            continue
        value = env.get(agent.api_key_env, "").strip()
        if value:
            keys[agent.name] = value
        elif agent.is_local:
            logger.debug("agent %s: %s unset; local endpoint, using a placeholder key", agent.name, agent.api_key_env)
            keys[agent.name] = PLACEHOLDER_KEY
        else:
            missing.append(f"  agent {agent.name!r}: environment variable {agent.api_key_env} is not set")
    if missing:
        raise PanelError("missing API keys (set them in the environment; keys never go in the panel file)\n"
                         + "\n".join(missing))
    return keys
