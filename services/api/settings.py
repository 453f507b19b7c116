"""Settings of the REST API, from `MAGDI_API_*` environment variables (Neo4j from `MAGDI_NEO4J_*`).

Built by the cached `deps.get_settings()` when first asked for, never at import, so tests pass
their own `ApiSettings` to `create_app` and `magdi serve` reads the environment it was started in.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from magdi.policy import OperatorPolicy
from magdi.settings import Neo4jSettings

MIN_TOKEN_LENGTH = 16
MIN_TOKEN_BITS = 64  # estimated from the token's own character frequencies; token_urlsafe(32) has ~200
# Words copied from examples; a token containing one (e.g. "changemechangeme") never guards a deployment.
PLACEHOLDER_WORDS = ("changeme", "changethis", "replaceme", "placeholder", "example", "password", "secret")
TOKEN_ADVICE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ApiSettings(BaseSettings):
    """Every tunable of the API in one place; defaults are the safe choice (closed, no CORS)."""

    model_config = SettingsConfigDict(env_prefix="MAGDI_API_", extra="ignore")

    token: SecretStr | None = Field(None, description="bearer token for writes, imports and Cypher (and reads "
                                                      "unless open_reads)")
    open_reads: bool = Field(False, description="GET endpoints need no token")
    insecure_dev: bool = Field(False, description="with no token configured, allow every endpoint without "
                                                  "auth (local development only)")
    max_body_bytes: int = Field(64 * 2**20, ge=1024, description="largest import body (413 above)")
    max_json_bytes: int = Field(2**20, ge=1024, description="largest JSON body of the other endpoints (413 above)")
    cypher_timeout_s: float = Field(10.0, gt=0, le=600, description="server-side timeout of one user query")
    cypher_max_rows: int = Field(1000, ge=1, description="row cap of a Cypher result (then truncated)")
    cypher_max_bytes: int = Field(8 * 2**20, ge=1024, description="JSON size cap of a Cypher result")
    default_page_limit: int = Field(50, ge=1)
    max_page_limit: int = Field(500, ge=1, description="a larger ?limit= is a 422")
    search_window: int = Field(2000, ge=1, le=100_000, description="debates one GET /v1/debates?q= request "
                               "reads at most (the search is a bounded scan; next_cursor goes on)")
    export_batch_size: int = Field(256, ge=1, le=10_000, description="MAGs per Neo4j page while streaming")
    import_timeout_s: float = Field(300.0, gt=0, description="timeout of the one import transaction")
    cypher_max_concurrent: int = Field(8, ge=1, description="Cypher queries running at once (429 beyond), so "
                                       "slow queries cannot take every worker thread")
    cypher_rate_per_min: int = Field(120, ge=1, description="Cypher queries per minute per client address "
                                     "(bursts of up to a quarter of it; 429 beyond)")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="Host header values served, comma-separated (DNS-rebinding guard); '*' = any")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS, comma-separated; empty = CORS off")
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings, description="from MAGDI_NEO4J_*")
    policy: OperatorPolicy = Field(default_factory=OperatorPolicy, description="declared endpoints, data root and "
                                                                               "job caps (MAGDI_*, magdi.policy)")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        raw = value.get_secret_value()
        if len(raw) < MIN_TOKEN_LENGTH:
            raise ValueError(f"MAGDI_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters; {TOKEN_ADVICE}")
        if any(word in re.sub(r"[\s._-]", "", raw.lower()) for word in PLACEHOLDER_WORDS):
            raise ValueError(f"MAGDI_API_TOKEN looks like a placeholder copied from an example; {TOKEN_ADVICE}")
        if token_bits(raw) < MIN_TOKEN_BITS:
            raise ValueError(f"MAGDI_API_TOKEN is too predictable (about {token_bits(raw):.0f} bits, at least "
                             f"{MIN_TOKEN_BITS} needed: repeated or few distinct characters); {TOKEN_ADVICE}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        if self.default_page_limit > self.max_page_limit:
            raise ValueError("default_page_limit must not exceed max_page_limit")
        return self

    @property
    def writes_enabled(self) -> bool:
        return self.token is not None or self.insecure_dev


def token_bits(token: str) -> float:
    """Entropy estimate: length times the Shannon entropy of the token's character frequencies.

    An over-estimate for structured tokens, but it catches what the length check cannot:
    sixteen `a`s (0 bits), `abcdabcdabcdabcd` (32), a word typed twice (`changemechangeme`, 43).
    """
    counts = Counter(token)
    return -len(token) * sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
