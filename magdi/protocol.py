"""How a job's debates run: the protocol config stored in every job spec (its one home).

`magdi generate`, the worker and the API all build and read this model, so its defaults (three
discussion rounds, everyone sees everyone, one re-ask) exist once. The protocols themselves
(`services/generator/protocols/`) read it; convincing samples are embedded as `Demo`s so a worker
on another machine runs the same prompts without the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Topology = Literal["all", "ring"] | list[tuple[str, str]]


class Demo(BaseModel):
    """One demonstration: question (+ options), the human explanation and the gold answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1)
    options: list[str] = Field(default_factory=list)
    explanation: str = ""
    answer: str = Field(min_length=1, description="canonical answer (option letter for choice tasks)")


class ProtocolConfig(BaseModel):
    """How debates run; stored in the job spec (so it is part of the job's identity)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["reconcile", "debate"] = "reconcile"
    max_rounds: int = Field(3, ge=0, le=20, description="discussion rounds after round 0 (paper: 3)")
    topology: Topology = Field("all", description="all | ring | explicit [source, target] agent pairs "
                                                  "(also 'a->b,b->c')")
    reask: bool = Field(True, description="one re-ask quoting the parse error before storing 'invalid'")
    missing_confidence: Literal["zero", "ignore"] = Field(
        "zero", description="a missing confidence in the team vote: 'zero' (ReConcile: 0.0, recalibrated to 0.1) "
                            "or 'ignore' (no weight); see magdi.answers.weighted_vote")
    demos: dict[str, list[Demo]] = Field(default_factory=dict, description="convincing samples by file stem")
    demos_source: str | None = Field(None, description="where the demos were read from (informational)")

    @field_validator("topology", mode="before")
    @classmethod
    def _parse_topology(cls, value: Any) -> Any:
        """Also accept "a->b, b->c" and [["a", "b"], ...] / ["a->b", ...]."""
        if isinstance(value, str) and value not in ("all", "ring"):
            value = [p for p in value.split(",") if p.strip()]
        if isinstance(value, list):
            pairs = []
            for item in value:
                if isinstance(item, str):
                    src, sep, dst = item.partition("->")
                    if not sep:
                        raise ValueError(f"topology edge {item!r}: expected 'source->target'")
                    item = (src.strip(), dst.strip())
                if not isinstance(item, list | tuple) or len(item) != 2:
                    raise ValueError(f"topology edge {item!r}: expected 'source->target' or [source, target]")
                pairs.append(tuple(item))
            return pairs
        return value

    def check_agents(self, agents: Sequence[str]) -> None:
        if isinstance(self.topology, list):
            unknown = sorted({a for pair in self.topology for a in pair} - set(agents))
            if unknown:
                raise ValueError(f"topology names agents not on the panel: {', '.join(unknown)}")
