"""What the operator allows a job to do: declared endpoints, egress, the data root and per-job caps.

Whoever holds the API token may queue work; they may not decide where the server sends data,
which secret it sends, or which file it reads (docs/security.md). So the operator declares, in
server configuration, the endpoints a job may use (base URL, key variable, limits, prices, the
models on offer); API callers pick them by name and choose models, sampling and rounds within
the caps here. The worker binds every job it runs to ITS declarations again (a spec may have
reached Neo4j some other way), checks where each host resolves to before the first call, and
reads data files only under its data root (`realpath`, so a symlink cannot lead out of it).

`magdi generate`, run by the operator at the command line, keeps inline endpoints (`base_url`,
`api_key_env` in a panel file) and resolves `endpoint: NAME` seats from the same declarations.

Settings (`MAGDI_*`; one object, nested in the API's and the generator's settings):

    MAGDI_ENDPOINTS_FILE   YAML with `endpoints:` (a list) and optionally `egress_allow:`
    MAGDI_ENDPOINTS        the same list as JSON (added to the file's)
    MAGDI_EGRESS_ALLOW     hosts, IPs or CIDR networks that may be non-public (comma-separated)
    MAGDI_DATA_ROOT        the only folder data files are read from for queued jobs
    MAGDI_JOB_MAX_QUESTIONS, MAGDI_JOB_MAX_TOKENS (per call), MAGDI_JOB_MAX_COST_USD,
    MAGDI_JOB_MAX_ROUNDS, MAGDI_JOB_MAX_AGENTS
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from magdi.config_loading import ConfigError, Location, dotted, read_yaml, suggest
from magdi.errors import UserError
from magdi.mag import repeated
from magdi.panel import NAME_PATTERN, OPERATOR_FIELDS, AgentConfig, EndpointSettings, PanelConfig

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# One message for "outside the root", "does not exist" and "unreadable": a caller learns nothing
# about the server's files beyond those the operator put under the root.
DATA_PATH_REFUSED = "no readable data file or folder of that name under the server's data root"
MAX_TREE_FILES = 100_000  # a data folder (MATH) is walked to check it; bounded
ENDPOINTS_FILE_KEYS = frozenset({"endpoints", "egress_allow"})
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]*")  # a host name in MAGDI_EGRESS_ALLOW


class Who(StrEnum):
    """Who wrote the panel being bound, which decides what it may set."""

    CALLER = "caller"  # an API request: declared endpoints only, operator fields refused, caps apply
    WORKER = "worker"  # a spec read from Neo4j: re-bound to this worker's declarations, caps apply
    OPERATOR = "operator"  # `magdi generate`: inline endpoints allowed, declared ones resolved


class PolicyError(UserError):
    """A panel or job the policy refuses; `problems` are (location, message) pairs for a 422."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = problems
        super().__init__("refused by the server's endpoint policy:\n" + "\n".join(
            f"  {dotted(loc)}: {msg}" for loc, msg in problems))


class DataPathError(UserError):
    """A data path that may not be read; the message is the same whatever the reason (the log has it)."""


class EgressError(UserError):
    """An endpoint's host resolves to an address the operator has not allowed."""


class Endpoint(EndpointSettings):
    """An endpoint the operator offers: where it is, its key variable, quotas, prices and models."""

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN, description="what panels call it")
    base_url: str = Field(min_length=1, description="OpenAI-compatible base URL")  # type: ignore[assignment]
    models: list[str] = Field(min_length=1, description="the model names jobs may use on it")
    max_tokens: int = Field(1024, ge=1, description="default and cap of max_tokens per call")

    def settings(self) -> dict[str, Any]:
        """The operator's part of an agent bound to this endpoint."""
        return {name: getattr(self, name) for name in OPERATOR_FIELDS}


class OperatorPolicy(BaseSettings):
    """The operator's rules for queued jobs; defaults allow no endpoint and no data file."""

    # empty = unset, so compose can pass `${MAGDI_JOB_MAX_COST_USD:-}` through
    model_config = SettingsConfigDict(env_prefix="MAGDI_", extra="ignore", env_ignore_empty=True)

    endpoints_file: Path | None = Field(None, description="YAML with `endpoints:` and optionally `egress_allow:`")
    endpoints: list[Endpoint] = Field(default_factory=list, description="declared endpoints (JSON in the env)")
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="hosts, IPs or CIDR networks a worker may reach although they are not "
                                          "public (loopback, private, link-local), comma-separated")
    data_root: Path | None = Field(None, description="queued jobs read data files only under this folder")
    job_max_questions: int = Field(10_000, ge=1, description="questions per queued job")
    job_max_tokens: int = Field(4096, ge=1, description="max_tokens per call, whatever an endpoint allows")
    job_max_cost_usd: float | None = Field(None, gt=0, description="a job stops (failed, 'cost cap reached') "
                                                                   "before a call could take it past this")
    job_max_rounds: int = Field(10, ge=0, description="discussion rounds per debate")
    job_max_agents: int = Field(8, ge=1, description="agents per panel")

    @model_validator(mode="before")
    @classmethod
    def _read_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("endpoints_file"):
            return data
        path = Path(data["endpoints_file"])
        try:
            loaded = read_yaml(path, what="endpoints file")
        except ConfigError as exc:
            raise ValueError(f"endpoints_file {exc}") from None
        unknown = sorted(set(loaded) - ENDPOINTS_FILE_KEYS)
        if unknown:
            raise ValueError(f"endpoints_file {path}: unknown key {unknown[0]!r}"
                             f"{suggest(unknown[0], sorted(ENDPOINTS_FILE_KEYS))}")
        data = dict(data)
        data["endpoints"] = [*(loaded.get("endpoints") or []), *(data.get("endpoints") or [])]
        data["egress_allow"] = [*_split(loaded.get("egress_allow")), *_split(data.get("egress_allow"))]
        return data

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: Any) -> list[str]:
        entries = _split(value)
        for entry in entries:
            if not _is_network(entry) and not _HOST.fullmatch(entry):
                raise ValueError(f"egress_allow: {entry!r} is neither a host name, an IP address nor a network")
        return [e.lower() for e in entries]

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, endpoints: list[Endpoint]) -> list[Endpoint]:
        dupes = repeated(e.name for e in endpoints)
        if dupes:
            raise ValueError(f"endpoints declared twice: {', '.join(dupes)}")
        return endpoints

    # -- endpoints -------------------------------------------------------------------------------
    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def declared_for(self, base_url: str | None, api_key_env: str | None, model: str) -> Endpoint | None:
        """The declared endpoint at this base URL with this key variable (an inline agent's match); of
        several (one per price), the one offering `model`."""
        same = [e for e in self.endpoints if e.base_url == (base_url or "").rstrip("/") and e.api_key_env == api_key_env]
        return next((e for e in same if model in e.models), same[0] if same else None)

    def bind(self, panel: PanelConfig, who: Who) -> PanelConfig:
        """The panel with every declared endpoint filled in; PolicyError listing every problem.

        CALLER: only `endpoint: NAME` seats, no operator field set. WORKER: a seat names a declared
        endpoint, or its base URL and key variable equal one; the operator's fields replace whatever
        the spec holds. OPERATOR: inline seats stay as written. Caps apply except for OPERATOR.
        """
        problems: list[tuple[Location, str]] = []
        capped = who is not Who.OPERATOR
        if capped and len(panel.agents) > self.job_max_agents:
            problems.append((("panel", "agents"), f"at most {self.job_max_agents} agents per panel on this server"))
        agents = []
        for i, agent in enumerate(panel.agents):
            where: Location = ("panel", "agents", i)
            declared = self._declared(agent, who, where, problems)
            if declared is None:
                agents.append(agent)
                continue
            if agent.model not in declared.models:
                problems.append((where + ("model",), f"endpoint {declared.name!r} offers the models "
                                                     f"{', '.join(declared.models)}"))
            cap = min(declared.max_tokens, self.job_max_tokens) if capped else declared.max_tokens
            chosen = "max_tokens" in agent.model_fields_set
            if chosen and agent.max_tokens > cap:
                problems.append((where + ("max_tokens",), f"at most {cap} on endpoint {declared.name!r}"))
            update = {**declared.settings(), "max_tokens": agent.max_tokens if chosen else cap}
            agents.append(agent.model_copy(update=update))
        if problems:
            raise PolicyError(problems)
        return panel.model_copy(update={"agents": agents})

    def _declared(self, agent: AgentConfig, who: Who, where: Location,
                  problems: list[tuple[Location, str]]) -> Endpoint | None:
        offered = ", ".join(e.name for e in self.endpoints) or "none (the operator declared no endpoint)"
        if who is Who.CALLER:
            for name in sorted(OPERATOR_FIELDS & agent.model_fields_set):
                problems.append((where + (name,), "set by the operator for each endpoint; API requests choose an "
                                                  f"endpoint by name (this server offers: {offered})"))
        if agent.endpoint is not None:
            declared = self.endpoint(agent.endpoint)
            if declared is None:
                problems.append((where + ("endpoint",), f"no endpoint {agent.endpoint!r}; this server offers: {offered}"))
            return declared
        if who is Who.WORKER:
            declared = self.declared_for(agent.base_url, agent.api_key_env, agent.model)
            if declared is None:
                problems.append((where + ("base_url",), "not an endpoint declared by this worker's operator "
                                                        "(MAGDI_ENDPOINTS / MAGDI_ENDPOINTS_FILE)"))
            return declared
        return None  # CALLER: already refused (base_url is an operator field); OPERATOR: inline is fine

    def check_caps(self, *, questions: int | None, max_rounds: int) -> None:
        """PolicyError when a job asks for more questions or rounds than the operator allows."""
        problems: list[tuple[Location, str]] = []
        if questions is not None and questions > self.job_max_questions:
            problems.append((("limit",), f"at most {self.job_max_questions} questions per job on this server"))
        if max_rounds > self.job_max_rounds:
            problems.append((("protocol", "max_rounds"), f"at most {self.job_max_rounds} on this server"))
        if problems:
            raise PolicyError(problems)

    # -- egress ----------------------------------------------------------------------------------
    def check_egress(self, panel: PanelConfig) -> None:
        """EgressError unless every endpoint host resolves only to public or allow-listed addresses.

        Blocking (DNS): call it in a thread. The resolved addresses are checked, not the name, so a
        public-looking name that points at 169.254.169.254 or 127.0.0.1 is refused as well.
        """
        problems = []
        for base_url, label in dict.fromkeys((a.base_url or "", a.endpoint or a.base_url or "") for a in panel.agents):
            parts = urlsplit(base_url)
            host = (parts.hostname or "").lower()
            try:
                addresses = _resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
            except OSError as exc:
                problems.append(f"endpoint {label}: host {host} does not resolve ({exc.__class__.__name__})")
                continue
            blocked = [ip for ip in addresses if not _public(ip) and not self._allowed(host, ip)]
            if blocked:
                log.warning("egress refused: %s (%s) resolves to %s", label, host, ", ".join(map(str, blocked)))
                problems.append(f"endpoint {label}: {host} resolves to a {_kind(blocked[0])} address, which "
                                "MAGDI_EGRESS_ALLOW does not list")
        if problems:
            raise EgressError("egress refused (no call was made)\n" + "\n".join(f"  {p}" for p in problems))

    def _allowed(self, host: str, ip: IPAddress) -> bool:
        for entry in self.egress_allow:
            if _is_network(entry):
                if _unmapped(ip) in ipaddress.ip_network(entry, strict=False):
                    return True
            elif entry == host:
                return True
        return False

    # -- data files ------------------------------------------------------------------------------
    def confine(self, path: str) -> Path:
        """The real path of a data file or folder under the data root; DataPathError (generic) otherwise."""
        if self.data_root is None:
            raise DataPathError("this server reads no data files: its operator has set no data root "
                                "(MAGDI_DATA_ROOT)")
        root = Path(os.path.realpath(self.data_root))
        if "\x00" in path:
            raise DataPathError(DATA_PATH_REFUSED)
        given = Path(path)
        real = Path(os.path.realpath(given if given.is_absolute() else root / given))
        if not real.is_relative_to(root) or not os.access(real, os.R_OK) or not (real.is_file() or real.is_dir()):
            log.info("data path %r refused (real path %s, root %s)", path, real, root)
            raise DataPathError(DATA_PATH_REFUSED)
        if real.is_dir():
            _check_tree(real, root, path)
        return real

    def stored_path(self, real: Path) -> str:
        """A path `confine` returned, relative to the root (how a job spec stores it): each worker
        resolves it under its own root again."""
        return str(real.relative_to(os.path.realpath(self.data_root or "/"))) or "."


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _unmapped(ip: IPAddress) -> IPAddress:
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def _public(ip: IPAddress) -> bool:
    ip = _unmapped(ip)
    return ip.is_global and not ip.is_multicast


def _kind(ip: IPAddress) -> str:
    ip = _unmapped(ip)
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def _check_tree(folder: Path, root: Path, given: str) -> None:
    """A data folder is read whole (MATH): every file in it must stay under the root, and it is bounded."""
    seen = 0
    for dirpath, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            seen += 1
            real = Path(os.path.realpath(Path(dirpath) / name))
            if seen > MAX_TREE_FILES or not real.is_relative_to(root):
                log.info("data folder %r refused at %s (%d files seen)", given, real, seen)
                raise DataPathError(DATA_PATH_REFUSED)
