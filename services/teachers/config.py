"""Configuration of the simulated teacher panel: data paths, discussion policy and fault knobs.

One pydantic model so that the command line (`cli`: one option per field, built from this model;
a field's ``json_schema_extra["flag"]`` names its option where the field name would read badly), the
test runner (which writes it to a JSON file for the subprocess) and the Python API all share the
same validated settings. Every fault rate is
a probability per request, drawn from an RNG seeded by (seed, model, prompt, attempt number), so
a run with the same requests in the same order sees the same faults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.teachers.replay import RECORDED_MODELS

Rate = Annotated[float, Field(ge=0.0, le=1.0)]

# knobs that `per_model` may override for one served name
FAULT_FIELDS: tuple[str, ...] = (
    "latency_s",
    "latency_jitter_s",
    "rpm_limit",
    "tpm_limit",
    "retry_after_header",
    "rate_window_s",
    "error_rate",
    "timeout_rate",
    "hang_s",
    "malformed_rate",
    "empty_rate",
    "truncated_body_rate",
    "wrong_usage_rate",
    "reset_rate",
    "batch_error_rate",
)


class PanelSimConfig(BaseModel):
    """Settings of one simulated panel server. All rates are per-request probabilities in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="seeds the discussion policy, confidences and fault draws")
    solutions_path: Path = Field(description="gsm8k model_solutions.jsonl (four recorded models)",
                                 json_schema_extra={"flag": "--solutions"})
    questions_path: Path = Field(description="the line-aligned questions file (gsm8k test.jsonl)",
                                 json_schema_extra={"flag": "--questions"})
    models: list[str] | None = Field(None, description="recorded models to serve; None = all four",
                                     json_schema_extra={"flag": "--model"})
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="extra model names -> recorded model (e.g. 'gpt-4' -> '175b_verification')",
        json_schema_extra={"flag": "--alias"},
    )

    # discussion policy (see policy.py)
    switch_k: float = Field(4.0, gt=0, description="slope of p_switch = sigmoid(k*(other-own) - bias)")
    switch_bias: float = Field(1.0, description="stubbornness: p_switch at equal support is sigmoid(-bias)")
    confidence_jitter: float = Field(0.05, ge=0, le=0.2, description="max seeded jitter added to confidences")

    # latency and quotas
    latency_s: float = Field(0.0, ge=0, description="fixed delay before every answer")
    latency_jitter_s: float = Field(0.0, ge=0, description="extra uniform delay in [0, jitter]")
    rpm_limit: int | None = Field(None, ge=1, description="requests per model per sliding 60 s window")
    tpm_limit: int | None = Field(None, ge=1, description="tokens per model per sliding 60 s window")
    retry_after_header: bool = Field(True, description="send Retry-After with 429 answers")
    rate_window_s: float | None = Field(
        None, gt=0, le=60,
        description="enforce rpm/tpm per window of this many seconds, scaled (rpm * w / 60), as providers "
        "that quantize per-minute limits do; None = a sliding 60 s window",
    )

    # faults, checked in this order; the first one drawn wins
    error_rate: Rate = Field(0.0, description="answer 500/502/503")
    timeout_rate: Rate = Field(0.0, description="hang for hang_s seconds, then answer")
    hang_s: float = Field(30.0, ge=0, description="how long a 'timeout' hangs; set above the client timeout")
    malformed_rate: Rate = Field(0.0, description="content that is not valid JSON (truncated JSON or prose)")
    empty_rate: Rate = Field(0.0, description="empty content")
    truncated_body_rate: Rate = Field(0.0, description="HTTP 200 whose body is JSON cut in the middle")
    wrong_usage_rate: Rate = Field(0.0, description="usage missing or negative")
    reset_rate: Rate = Field(0.0, description="connection closed mid-body after the headers were sent")

    # the Batch API (/v1/files, /v1/batches; see batches.py). The fault rates above apply to batch
    # lines too, except the connection faults (timeout, truncated_body, reset): a line has no connection.
    batch_completion_s: float = Field(
        2.0, ge=0, description="seconds from a batch's creation until its last line is answered; "
        "its lines are answered evenly over this time (line i of n at (i + 1) / n of it)",
    )
    batch_expiry_s: float = Field(
        86400.0, gt=0, description="the completion window ('24h'): a batch still running this long after "
        "its creation expires; its unanswered lines go to the error file as batch_expired",
    )
    batch_cancel_s: float = Field(0.0, ge=0, description="how long a cancelled batch stays 'cancelling'")
    batch_error_rate: Rate = Field(0.0, description="per batch line: HTTP 500 in the batch's error file")
    batch_max_requests: int = Field(50_000, ge=1, description="lines per batch; more fail its validation")
    batch_max_bytes: int = Field(
        200 * 1024 * 1024, ge=1, description="bytes per batch input file; a larger upload is refused"
    )
    down_models: list[str] = Field(
        default_factory=list,
        description="names that always answer 503 (a recorded model takes its aliases down with it)",
        json_schema_extra={"flag": "--down-model"},
    )
    per_model: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="served name (model or alias) -> overrides of the fault/latency/quota knobs above, "
        "e.g. {'flaky': {'error_rate': 0.3}}: one panel can hold a healthy and a failing teacher",
    )

    @model_validator(mode="after")
    def _check_models(self) -> PanelSimConfig:
        served = self.served_models()
        for name in served:
            if name not in RECORDED_MODELS:
                raise ValueError(f"models: {name!r} is not a recorded model ({', '.join(RECORDED_MODELS)})")
        for alias, target in self.aliases.items():
            if target not in served:
                raise ValueError(f"aliases: {alias!r} points to {target!r}, which is not served")
        known = set(served) | set(self.aliases)
        for name in self.down_models:
            if name not in known:
                raise ValueError(f"down_models: {name!r} is neither a served model nor an alias")
        for name, overrides in self.per_model.items():
            if name not in known:
                raise ValueError(f"per_model: {name!r} is neither a served model nor an alias")
            extra = set(overrides) - set(FAULT_FIELDS)
            if extra:
                raise ValueError(
                    f"per_model[{name!r}]: only {', '.join(FAULT_FIELDS)} can be overridden, "
                    f"not {', '.join(sorted(extra))}"
                )
            self.for_model(name)  # validates the overridden values
        return self

    def for_model(self, name: str) -> PanelSimConfig:
        """The settings that apply to requests for served name `name` (its per_model overrides applied)."""
        overrides = self.per_model.get(name)
        if not overrides:
            return self
        base = self.model_dump(exclude={"per_model"})
        return PanelSimConfig.model_validate({**base, **overrides})

    def served_models(self) -> list[str]:
        """The recorded models this panel answers for, in canonical order."""
        return list(RECORDED_MODELS) if self.models is None else list(self.models)

    def resolve(self, name: str) -> str | None:
        """Recorded model behind a requested model name, or None when the name is unknown."""
        if name in self.aliases:
            return self.aliases[name]
        return name if name in self.served_models() else None

    @classmethod
    def from_json_file(cls, path: Path) -> PanelSimConfig:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
