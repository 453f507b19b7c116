"""The Multi-Agent Interaction Graph (MAG) domain model.

One debate on one question is one MAG: a node per (agent, round) response and a directed edge
(`INFORMS`) from every response that was shown in another response's prompt. Any number of agents
and rounds. The reference's fixed 3x4 template (12 slots, hard-coded edges, docs/method.md D4/D5) is not built
anywhere: the trainer reads each MAG's own INFORMS edges in both of its modes.

These pydantic models are the contract between the generator, the graph store, the API and the
trainer; they are what the API returns and what our lossless `jsonl` format holds, one MAG a line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from magdi import ids
from magdi.panel import PanelConfig
from magdi.protocol import ProtocolConfig


class TaskType(StrEnum):
    """How answers are extracted and compared (see `magdi.answers`)."""

    NUMBER = "number"  # GSM8K: a single number
    YES_NO = "yes_no"  # StrategyQA
    CHOICE = "choice"  # ECQA/CommonsenseQA, ARC, AQuA: one option by label or text
    MATH = "math"  # MATH: LaTeX, compared symbolically
    TEXT = "text"  # anything else: normalised string equality


class ParseStatus(StrEnum):
    VALID = "valid"  # reasoning and answer parsed from the teacher's output
    INVALID = "invalid"  # the teacher answered but the output could not be parsed (raw text kept)
    ABSENT = "absent"  # expected but missing (agent dropped out, gap in an imported file)


class DebateStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"


def repeated(names: Iterable[str]) -> list[str]:
    """Names that occur more than once, sorted: the one check behind every "duplicate agent" error."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


def utcnow() -> datetime:
    return datetime.now(UTC)


INT64_MAX = 2**63 - 1  # Neo4j stores integers as 64-bit: anything larger is refused at validation


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, use_enum_values=False)


class Question(_Model):
    """A benchmark question with its gold answer."""

    dataset: str = Field(min_length=1)
    qid: str = Field(min_length=1, description="id within the dataset (source id, index or text hash)")
    text: str = Field(min_length=1)
    task: TaskType = TaskType.TEXT
    gold_answer: str | None = None
    options: list[str] = Field(default_factory=list, description="answer options for choice tasks")
    gold_explanation: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="source fields kept for round trips")

    @property
    def id(self) -> str:
        """Content-based within the dataset (see `magdi.ids`); `qid` is where the record came from."""
        return ids.question_id(self.dataset, self.text, self.gold_answer, self.options)


class Agent(_Model):
    """A seat at the table: a name unique within the panel, the model behind it and where it runs."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    model: str = Field(min_length=1)
    endpoint: str | None = Field(default=None, description="base URL, never a key")

    @property
    def id(self) -> str:
        return f"{self.name}@{self.model}"


class Message(_Model):
    """One chat message as sent to an endpoint."""

    role: str = Field(min_length=1)
    content: str


class _Usage(_Model):
    """What calling an endpoint cost: shared by one call (`Output`) and a whole turn (`Response`)."""

    tokens_in: int | None = Field(default=None, ge=0, le=INT64_MAX)
    tokens_out: int | None = Field(default=None, ge=0, le=INT64_MAX)
    latency_s: float | None = Field(default=None, ge=0.0)
    cost_usd: float | None = Field(default=None, ge=0.0)
    finish_reason: str | None = None
    attempts: int | None = Field(default=None, ge=0, le=INT64_MAX, description="HTTP calls made, retries included")


class Output(_Usage):
    """One completion call of a turn, in call order: the first ask, then a re-ask (if any).

    `text` is the endpoint's reply verbatim, or None when the call failed (`error` says why). A
    re-ask's messages were the turn's prompt, the previous output as an assistant turn, then `reask`.
    """

    text: str | None = None
    error: str | None = None
    reask: str | None = Field(default=None, description="the re-ask message that preceded this call")


class Response(_Usage):
    """One agent's answer in one round: a MAG node (usage fields: the whole turn, re-ask included)."""

    agent: str
    round: int = Field(ge=0, le=INT64_MAX)
    parse_status: ParseStatus = ParseStatus.VALID
    reasoning: str | None = None
    answer: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0, description="self-reported, in [0,1]")
    recalibrated_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    correct: bool | None = Field(default=None, description="answer equivalent to gold; None if unknown")
    raw_text: str | None = Field(default=None, description="the teacher's output, verbatim")
    parse_error: str | None = None
    model: str | None = None
    prompt_hash: str | None = None
    prompt: list[Message] | None = Field(default=None, description="the chat messages this agent was shown")
    outputs: list[Output] = Field(default_factory=list, description="every completion call of the turn, in order")

    @property
    def label(self) -> int:
        """Node class for the trainer: 1 correct, 0 incorrect, 2 absent/invalid/unknown."""
        if self.parse_status is not ParseStatus.VALID or self.correct is None:
            return 2
        return 1 if self.correct else 0

    @model_validator(mode="after")
    def _absent_has_no_answer(self) -> Response:
        if self.parse_status is ParseStatus.ABSENT and (self.answer is not None or self.reasoning is not None):
            raise ValueError("an absent response carries no reasoning or answer")
        return self


class Edge(_Model):
    """`source` was shown in the prompt that produced `target` (by agent/round coordinates)."""

    source_agent: str
    source_round: int = Field(ge=0, le=INT64_MAX)
    target_agent: str
    target_round: int = Field(ge=0, le=INT64_MAX)

    @property
    def same_agent(self) -> bool:
        return self.source_agent == self.target_agent


class Debate(_Model):
    """A whole MAG: the question, the panel, every response and every visibility edge."""

    question: Question
    job_id: str | None = None
    protocol: str = "reconcile"
    panel: list[Agent]
    config_hash: str | None = None
    status: DebateStatus = DebateStatus.COMPLETE
    responses: list[Response] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    team_answer: str | None = None
    team_correct: bool | None = None
    majority_answer: str | None = None
    consensus: bool | None = None
    rounds_used: int | None = Field(default=None, ge=0, le=INT64_MAX)
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def id(self) -> str:
        """(job, question, record) for a generated debate; an imported one (no job) adds its content."""
        q = self.question
        if self.job_id:
            return ids.debate_id(self.job_id, q.id, q.qid)
        return ids.debate_id(None, q.id, q.qid, self.content_digest())

    def content_digest(self) -> str:
        """What the MAG holds, independent of order and of what is derived from the gold.

        The question record, protocol, panel, responses and edges; not the labels (`correct`,
        recalibrated confidence), outcome, status or `created_at`, so re-labelling a re-import
        keeps its id.
        """
        body = self.model_dump(mode="json", include={"question", "protocol", "panel"})
        responses = sorted((r.model_dump(mode="json", exclude={"correct", "recalibrated_confidence"})
                            for r in self.responses), key=lambda r: (r["agent"], r["round"]))
        edges = sorted((e.source_agent, e.source_round, e.target_agent, e.target_round) for e in self.edges)
        return ids.digest(body, responses, edges, length=32)

    def response_id(self, agent: str, round_: int) -> str:
        return ids.response_id(self.id, agent, round_)

    @field_validator("panel")
    @classmethod
    def _unique_agents(cls, panel: list[Agent]) -> list[Agent]:
        dupes = repeated(a.name for a in panel)
        if dupes:
            raise ValueError(f"duplicate agent names in panel: {', '.join(dupes)}")
        if not panel:
            raise ValueError("a debate needs at least one agent")
        return panel

    @model_validator(mode="after")
    def _consistent(self) -> Debate:
        names = {a.name for a in self.panel}
        seen: set[tuple[str, int]] = set()
        for r in self.responses:
            if r.agent not in names:
                raise ValueError(f"response by {r.agent!r}, who is not on the panel")
            if (r.agent, r.round) in seen:
                raise ValueError(f"two responses for agent {r.agent!r} in round {r.round}")
            seen.add((r.agent, r.round))
        for e in self.edges:
            for agent, rnd in ((e.source_agent, e.source_round), (e.target_agent, e.target_round)):
                if (agent, rnd) not in seen:
                    raise ValueError(f"edge endpoint ({agent}, round {rnd}) is not a response of this debate")
        return self

    # -- convenient views -------------------------------------------------------------------
    def response(self, agent: str, round_: int) -> Response | None:
        return next((r for r in self.responses if r.agent == agent and r.round == round_), None)

    def rounds(self) -> int:
        return 1 + max((r.round for r in self.responses), default=-1)

    def sorted_responses(self) -> list[Response]:
        order = {a.name: i for i, a in enumerate(self.panel)}
        return sorted(self.responses, key=lambda r: (order[r.agent], r.round))

    @property
    def tokens_in(self) -> int:
        return sum(r.tokens_in or 0 for r in self.responses)

    @property
    def tokens_out(self) -> int:
        return sum(r.tokens_out or 0 for r in self.responses)

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd or 0.0 for r in self.responses)


def full_visibility_edges(responses: Iterable[Response]) -> list[Edge]:
    """The MAGDi spec's edges: every existing (a, r) informs every existing (a', r+1).

    Absent and invalid nodes get none (they were not shown to anyone), unlike the reference code,
    which hard-codes 27 index pairs, nine of them backwards in time (defect D4).
    """
    present = {(r.agent, r.round) for r in responses if r.parse_status is ParseStatus.VALID}
    by_round: dict[int, list[str]] = {}
    for agent, rnd in sorted(present):
        by_round.setdefault(rnd, []).append(agent)
    edges = []
    for rnd in sorted(by_round):
        for src in by_round[rnd]:
            for dst in by_round.get(rnd + 1, []):
                edges.append(Edge(source_agent=src, source_round=rnd, target_agent=dst, target_round=rnd + 1))
    return edges


JobMode = Literal["sync", "batch"]  # how a job's calls are made (JobSpec.mode)
JOB_MODES: tuple[str, ...] = get_args(JobMode)


class JobSpec(_Model):
    """What a generation job runs: a dataset slice, a panel and a protocol."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    dataset: str = Field(min_length=1)
    data_path: str | None = Field(default=None, description="dataset file read by the worker")
    data_format: str | None = None
    questions: list[Question] = Field(default_factory=list, description="inline questions (POST /v1/debates)")
    offset: int = Field(default=0, ge=0, le=INT64_MAX)
    limit: int | None = Field(default=None, ge=1, le=INT64_MAX)
    panel: PanelConfig = Field(description="the panel as written (declared endpoints by name; never a key)")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    mode: JobMode = Field(
        "sync", description="sync: one chat completion per turn; batch: each round's turns of every debate go out "
                            "as Batch API jobs (the provider's batch price and quota)")
    offline: bool = Field(False, description="batch mode through files (`vllm run-batch`) instead of the Batch API; "
                                             "only `magdi generate --offline --batch-dir` runs such a job")

    @model_validator(mode="after")
    def _one_source(self) -> JobSpec:
        if bool(self.data_path) == bool(self.questions):
            raise ValueError("a job reads either a data file (data_path) or inline questions, exactly one")
        if self.offline and self.mode != "batch":
            raise ValueError("offline is a kind of batch mode: set mode to 'batch'")
        return self

    @property
    def id(self) -> str:
        return f"job-{self.name}"

    @property
    def config_hash(self) -> str:
        inline = [q.model_dump(mode="json") for q in self.questions]
        # how the calls are made is part of the job (its price, where its results wait); a sync job's
        # hash is what it was before batch mode existed, so those jobs still resume
        how = [] if self.mode == "sync" else [self.mode, self.offline]
        return ids.digest(self.dataset, self.data_path, inline, self.offset, self.limit,
                          self.panel.model_dump(mode="json"), self.protocol.model_dump(mode="json"), *how)


class JobRunCounters(_Model):
    """What a job's runs met, summed over its finished runs; None until a run has recorded them."""

    calls: int | None = Field(None, description="requests sent to the endpoints, retries included")
    retries: int | None = Field(None, description="requests re-sent after a 5xx, timeout, reset or cut body")
    rate_limit_waits: int | None = Field(None, description="429 responses waited out")
    call_failures: int | None = Field(None, description="requests that failed (5xx, timeouts, resets)")
    store_outages: int | None = Field(None, description="times writes were held while Neo4j was unreachable")
    store_held_s: float | None = Field(None, description="seconds writes were held, over all outages")


RUN_COUNTERS = tuple(JobRunCounters.model_fields)


class Job(JobRunCounters):
    """A stored job, its progress and its runs' counters."""

    id: str
    spec: JobSpec
    status: JobStatus = JobStatus.QUEUED
    total: int = 0
    done: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    errors: list[str] = Field(default_factory=list)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def progress(self) -> float | None:
        """(done + failed) / total; None while the total is unknown."""
        return (self.done + self.failed) / self.total if self.total else None


def canonical(debate: Debate) -> Debate:
    """A copy with responses and edges in a fixed order (panel order, then round), for comparisons."""
    order = {a.name: i for i, a in enumerate(debate.panel)}
    edges = sorted(
        debate.edges,
        key=lambda e: (e.source_round, order[e.source_agent], e.target_round, order[e.target_agent]),
    )
    return debate.model_copy(update={"responses": debate.sorted_responses(), "edges": edges})
