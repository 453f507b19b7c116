"""Settings of the REST API, from `MAGDI_API_*` environment variables (Neo4j from `MAGDI_NEO4J_*`).

Built by the cached `deps.get_settings()` when first asked for, never at import, so tests pass
their own `ApiSettings` to `create_app` and `magdi serve` reads the environment it was started in.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from magdi.policy import OperatorPolicy
from magdi.settings import Neo4jSettings

MIN_TOKEN_LENGTH = 16
# Values copied from examples that must never guard a real deployment.
PLACEHOLDER_TOKENS = frozenset({"changeme", "changethis", "secret", "token", "password", "example"})


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
    export_batch_size: int = Field(256, ge=1, le=10_000, description="MAGs per Neo4j page while streaming")
    import_timeout_s: float = Field(300.0, gt=0, description="timeout of the one import transaction")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS, comma-separated; empty = CORS off")
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings, description="from MAGDI_NEO4J_*")
    policy: OperatorPolicy = Field(default_factory=OperatorPolicy, description="declared endpoints, data root and "
                                                                               "job caps (MAGDI_*, magdi.policy)")

    @field_validator("cors_origins", mode="before")
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
        if len(raw) < MIN_TOKEN_LENGTH or raw.lower() in PLACEHOLDER_TOKENS:
            raise ValueError(f"MAGDI_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters and not a "
                             "placeholder; generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        if self.default_page_limit > self.max_page_limit:
            raise ValueError("default_page_limit must not exceed max_page_limit")
        return self

    @property
    def writes_enabled(self) -> bool:
        return self.token is not None or self.insecure_dev
