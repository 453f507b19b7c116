"""Request and response bodies, inputs apart from outputs (`*In` / `*Create` vs `*Public`).

Inputs forbid unknown fields so a typo is a 422 naming it, and bound every size. The panel and
protocol of a job are the core's own models (`magdi.panel`, `magdi.protocol`): the same schema,
strictness and defaults as `magdi generate` and the worker. Outputs are built from the domain
model (`magdi.mag`), never from raw Neo4j records.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from magdi.datasets import FORMATS
from magdi.mag import Agent, DebateStatus, JobMode, JobRunCounters, JobStatus, ParseStatus, TaskType
from magdi.panel import NAME_PATTERN, PanelConfig
from magdi.protocol import ProtocolConfig


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- inputs ----------------------------------------------------------------------------------------
class QuestionIn(_In):
    text: str = Field(min_length=1, max_length=20_000)
    dataset: str = Field("adhoc", min_length=1, max_length=100, pattern=NAME_PATTERN)
    qid: str | None = Field(None, min_length=1, max_length=200, description="default: derived from the text")
    task: TaskType | None = Field(None, description="default: from the dataset name")
    gold_answer: str | None = Field(None, max_length=2_000)
    options: list[str] = Field(default_factory=list, max_length=26)
    gold_explanation: str | None = Field(None, max_length=20_000)


class DebateCreate(_In):
    question: QuestionIn
    panel: PanelConfig = Field(description="agents on endpoints the operator declared: "
                                           "{agents: [{name, endpoint, model, temperature?, max_tokens?}]}")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    name: str | None = Field(None, max_length=100, pattern=NAME_PATTERN,
                             description="job name; default: derived from the request, so a retry is a no-op")


class JobCreate(_In):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN, description="the job id is job-<name>")
    dataset: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    data_path: str = Field(min_length=1, max_length=1_000, description="data file (or MATH folder) under the "
                                                                       "server's data root, e.g. gsm8k/test.jsonl")
    format: Literal[FORMATS + ("auto",)] | None = Field(None, description="default: the dataset name")  # type: ignore[valid-type]
    offset: int = Field(0, ge=0, le=10_000_000)
    limit: int | None = Field(None, ge=1, le=10_000_000, description="default: every question from offset, "
                                                                     "up to the server's cap")
    panel: PanelConfig = Field(description="agents on endpoints the operator declared (see GET /v1/endpoints)")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    mode: JobMode = Field(
        "sync", description="sync: one chat completion per turn; batch: each round's turns of every debate go out "
                            "as Batch API jobs on the panel's endpoints (their batch price, results within the "
                            "provider's window). Offline batch files are a CLI matter (`magdi generate --offline`)")

    @field_validator("data_path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if "\x00" in value or any(part == ".." for part in re.split(r"[\\/]", value)):
            raise ValueError("must be a plain path without '..' segments")
        return value


class CypherIn(_In):
    query: str = Field(min_length=1, max_length=100_000)
    parameters: dict[str, Any] = Field(default_factory=dict, description="$name values (JSON)")


# -- outputs ---------------------------------------------------------------------------------------
class DebateAccepted(BaseModel):
    debate_id: str
    job_id: str
    status: JobStatus
    job_url: str
    debate_url: str


class JobPublic(JobRunCounters):
    """A job, its progress and its runs' counters (`JobRunCounters`: null until a run has finished)."""

    id: str
    name: str
    dataset: str
    status: JobStatus
    total: int
    done: int
    failed: int
    progress: float | None = Field(description="(done + failed) / total; null while the total is unknown")
    tokens_in: int
    tokens_out: int
    cost_usd: float
    errors: list[str]
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    spec: dict[str, Any]


class BatchPublic(BaseModel):
    """One batch of a batch-mode job: the provider's ids, the rounds it holds and how far it got."""

    key: str = Field(description="'<job id>/<hash of the input file>': the batch's id here and the tag it carries")
    batch_id: str | None = Field(description="the provider's batch id (or the offline file's stem); null until created")
    kind: str = Field(description="api (a provider's Batch API) or offline (files for vllm run-batch)")
    seq: int
    model: str
    rounds: list[int]
    status: str = Field(description="the provider's status at the last poll")
    total: int = Field(description="requests in the batch")
    completed: int
    failed: int
    ingested: bool = Field(description="every turn with a line in this batch is stored")
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    created_at: datetime | None


class BatchesPublic(BaseModel):
    items: list[BatchPublic] = Field(description="in submission order; empty for a synchronous job")


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class DebateSummary(BaseModel):
    """A debate node's properties (no nodes or edges): what a listing needs."""

    model_config = ConfigDict(extra="ignore")

    id: str
    job_id: str | None = None
    dataset: str
    question_id: str
    question_text: str | None = Field(None, description="the question as asked (null if it is not stored)")
    protocol: str
    status: DebateStatus
    team_answer: str | None = None
    team_correct: bool | None = None
    majority_answer: str | None = None
    consensus: bool | None = None
    rounds_used: int | None = None
    agents: list[str] = Field(default_factory=list)
    n_responses: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    created_at: str | None = None


class DebatesPage(BaseModel):
    items: list[DebateSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class QuestionPublic(BaseModel):
    id: str
    dataset: str
    qid: str
    text: str
    task: TaskType
    gold_answer: str | None
    options: list[str]
    gold_explanation: str | None


class MessagePublic(BaseModel):
    role: str
    content: str


class OutputPublic(BaseModel):
    """One completion call of the turn: the reply verbatim (null if the call failed), usage, latency."""

    text: str | None
    finish_reason: str | None
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float | None
    cost_usd: float | None
    attempts: int | None = Field(description="HTTP attempts of this call, retries included")
    error: str | None
    reask: str | None = Field(description="the re-ask message sent before this call (after the previous output)")


class NodePublic(BaseModel):
    """One response (agent, round): a MAG node. `label`: 1 correct, 0 incorrect, 2 absent/invalid/unknown."""

    id: str
    agent: str
    round: int
    parse_status: ParseStatus
    label: int
    reasoning: str | None
    answer: str | None
    confidence: float | None
    recalibrated_confidence: float | None
    correct: bool | None
    raw_text: str | None
    parse_error: str | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float | None
    cost_usd: float | None
    finish_reason: str | None
    prompt_hash: str | None
    attempts: int | None
    prompt: list[MessagePublic] | None = Field(description="the chat messages this agent was shown, as sent "
                                                           "(null for imported nodes)")
    outputs: list[OutputPublic] = Field(description="every completion call of the turn, first first: a re-asked "
                                                    "turn keeps the reply that could not be parsed")


class EdgePublic(BaseModel):
    """`source` was shown in the prompt that produced `target` (an INFORMS relationship)."""

    source: str
    target: str
    source_agent: str
    source_round: int
    target_agent: str
    target_round: int
    same_agent: bool


class DebateMetrics(BaseModel):
    nodes: int
    edges: int
    rounds: int
    valid: int
    invalid: int
    absent: int
    correct: int
    incorrect: int
    final_round_accuracy: float | None = Field(description="share of correct valid responses in the last round")
    tokens_in: int
    tokens_out: int
    cost_usd: float


class DebatePublic(BaseModel):
    id: str
    question: QuestionPublic
    job_id: str | None
    protocol: str
    panel: list[Agent]
    config_hash: str | None
    status: DebateStatus
    team_answer: str | None
    team_correct: bool | None
    majority_answer: str | None
    consensus: bool | None
    rounds_used: int | None
    error: str | None
    created_at: datetime
    nodes: list[NodePublic]
    edges: list[EdgePublic]
    metrics: DebateMetrics


class CypherOut(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="the row or size cap was reached; more rows exist")
    plan: dict[str, Any] | None = Field(None, description="with a leading EXPLAIN: the plan (nothing runs); "
                                        "with PROFILE: the plan with rows and db hits per operator")


class ImportResult(BaseModel):
    format: str
    imported: int
    debate_ids: list[str]


class AgentStats(BaseModel):
    agent: str
    debates: int
    responses: int
    invalid: int
    tokens_out: int
    round0_accuracy: float | None
    final_accuracy: float | None


class StatsPublic(BaseModel):
    debates: int
    complete: int
    consensus_rate: float | None = Field(description="agreement rate: share of the finished debates whose final "
                                         "answers agree; null while none has finished")
    mean_rounds: float | None = Field(description="mean rounds over the debates whose round count is known")
    team_accuracy: float | None
    majority_accuracy: float | None
    responses: int
    invalid_responses: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    tokens_per_debate: float | None
    agents: list[AgentStats]


class EndpointPublic(BaseModel):
    """A declared endpoint as API callers see it: a name to put in `panel.agents[].endpoint`."""

    name: str
    models: list[str]
    max_tokens: int = Field(description="default and cap of max_tokens per call")


class EndpointsPublic(BaseModel):
    endpoints: list[EndpointPublic]
    job_max_questions: int
    job_max_rounds: int
    job_max_agents: int
    job_max_cost_usd: float | None


class Health(BaseModel):
    status: str
    detail: str | None = None


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]]
