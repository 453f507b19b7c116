"""Settings of the generator service, from `MAGDI_GENERATOR_*` environment variables.

Built by `get_settings()` when first asked for (never at import), so tests and the CLI can set
the environment first or pass their own `GeneratorSettings`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from magdi.config_loading import load_settings
from magdi.policy import OperatorPolicy


class GeneratorSettings(BaseSettings):
    """Worker and run tunables; the operator's endpoints and caps are `policy` (`magdi.policy`)."""

    model_config = SettingsConfigDict(env_prefix="MAGDI_GENERATOR_", extra="ignore")

    worker_id: str | None = Field(None, description="default: <hostname>:<pid>:<random>")
    concurrency: int = Field(16, ge=1, description="debates in flight per job")
    lease_s: float = Field(60.0, gt=0, description="job lease; a dead worker's job is free after this")
    renew_every_s: float | None = Field(None, gt=0, description="default lease_s / 3")
    lease_margin_s: float = Field(5.0, ge=0, description="stop writing this long before the lease could expire")
    store_outage_s: float = Field(600.0, ge=0, description="how long to hold writes while Neo4j is unreachable "
                                  "(the lease is re-validated when it is back) before the debates in flight fail")
    poll_s: float = Field(2.0, gt=0, description="queue polling interval when idle")
    drain_timeout_s: float = Field(60.0, ge=0, description="on SIGTERM: time to finish in-flight turns")
    preflight_timeout_s: float = Field(5.0, gt=0, description="GET /models timeout per endpoint")
    counters_every_s: float = Field(2.0, gt=0, description="job progress counters refresh interval")
    batch_poll_s: float = Field(5.0, gt=0, description="batch mode: first delay between status checks of a batch")
    batch_poll_max_s: float = Field(60.0, gt=0, description="batch mode: the delay grows 1.5x per check up to this")
    batch_timeout_s: float = Field(90_000.0, gt=0, description="batch mode: give up waiting for a batch after this "
                                   "(the job fails, resumable; the batch is polled again then)")
    batch_settle_s: float = Field(5.0, gt=0, description="offline batch mode: an output file that stopped growing "
                                  "this long is complete (missing lines count as failed)")
    once: bool = Field(False, description="exit when the queue is empty instead of polling")
    log_level: str = Field("INFO", description="root log level of `python -m services.generator`")
    policy: OperatorPolicy = Field(default_factory=OperatorPolicy,
                                   description="declared endpoints, egress, data root, job caps (MAGDI_*)")

    @model_validator(mode="after")
    def _lease_fits(self) -> GeneratorSettings:
        renew = self.renew_every_s or self.lease_s / 3
        if renew + self.lease_margin_s >= self.lease_s:
            raise ValueError(f"renew_every_s ({renew}) + lease_margin_s ({self.lease_margin_s}) must be "
                             f"below lease_s ({self.lease_s}), or the lease lapses between renewals")
        return self


@lru_cache
def get_settings() -> GeneratorSettings:
    return load_settings(GeneratorSettings)
