"""What every protocol shares: its config, who sees whom, turn requests, parsing and the final vote.

A protocol is a pure function of the responses stored so far: `next_round` says which round to
run (or None when the debate is over) and `turns` builds that round's prompts from the previous
round alone. Nothing else is remembered, which is what makes a resumed job exact: read the
partial MAG back, and the same prompts come out for the turns still missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from magdi.answers import (
    AnswerParseError,
    is_equivalent,
    majority_vote,
    normalize_answer,
    parse_confidence,
    parse_json_output,
)
from magdi.mag import Debate, Edge, ParseStatus, Question, Response
from magdi.protocol import Demo, ProtocolConfig, Topology
from services.generator.protocols.prompts import Shown


def visible_sources(topology: Topology, agents: Sequence[str], target: str) -> list[str]:
    """Agents whose previous-round response `target` is shown (panel order; may include itself)."""
    if topology == "all":
        return list(agents)
    if topology == "ring":
        i = agents.index(target)
        wanted = {target, agents[i - 1]}
        return [a for a in agents if a in wanted]
    sources = {src for src, dst in topology if dst == target}
    return [a for a in agents if a in sources]


@dataclass(frozen=True)
class TurnRequest:
    """One call to make: the prompt and the previous-round responses it shows (= INFORMS edges)."""

    agent: str
    round: int
    messages: list[dict[str, str]]
    sources: tuple[tuple[str, int], ...] = ()

    def edges(self) -> list[Edge]:
        return [Edge(source_agent=a, source_round=r, target_agent=self.agent, target_round=self.round)
                for a, r in self.sources]


@dataclass
class ParsedTurn:
    answer: str
    reasoning: str
    confidence: float | None


@dataclass
class Outcome:
    """Debate-level fields set when a debate ends."""

    team_answer: str | None
    majority_answer: str | None
    consensus: bool
    team_correct: bool | None
    rounds_used: int
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def parse_turn(text: str, question: Question) -> ParsedTurn:
    """Reasoning/answer/confidence from a reply; AnswerParseError when no valid answer is in it."""
    obj = parse_json_output(text)
    raw_answer = obj.get("answer")
    answer = normalize_answer(raw_answer, question.task, question.options)
    if answer is None:
        raise AnswerParseError(f"the \"answer\" field {str(raw_answer)[:60]!r} is not a valid "
                               f"{question.task.value} answer")
    reasoning = obj.get("reasoning")
    if isinstance(reasoning, list):
        reasoning = " ".join(str(x) for x in reasoning)
    confidence = parse_confidence(obj.get("confidence_level", obj.get("confidence")))
    return ParsedTurn(answer=answer, reasoning="" if reasoning is None else str(reasoning), confidence=confidence)


def active_agents(debate: Debate, before_round: int) -> list[str]:
    """Panel agents that have not dropped out (an ABSENT turn) in any round < `before_round`."""
    dropped = {r.agent for r in debate.responses if r.round < before_round and r.parse_status is ParseStatus.ABSENT}
    return [a.name for a in debate.panel if a.name not in dropped]


def final_answers(debate: Debate) -> list[Response]:
    """Each agent's latest valid response (ReConcile's carry-forward), in panel order."""
    latest: dict[str, Response] = {}
    for r in sorted(debate.responses, key=lambda r: r.round):
        if r.parse_status is ParseStatus.VALID:
            latest[r.agent] = r
    return [latest[a.name] for a in debate.panel if a.name in latest]


class Protocol(ABC):
    """Round scheduling shared by both protocols; subclasses build prompts and pick the team answer."""

    name: ClassVar[str]
    asks_confidence: ClassVar[bool]

    def __init__(self, config: ProtocolConfig, demos: dict[str, list[Demo]]) -> None:
        self.config = config
        self.demos = demos  # per agent name: the demos that agent is shown

    # -- scheduling --------------------------------------------------------------------------
    def next_round(self, debate: Debate) -> int | None:
        if not debate.responses:
            return 0
        last = max(r.round for r in debate.responses)
        if any(debate.response(a, last) is None for a in active_agents(debate, last)):
            return last  # a round cut short by a crash: fill it in
        if not active_agents(debate, last + 1) or last >= self.config.max_rounds:
            return None
        return last + 1 if self.continues(debate, last) else None

    @abstractmethod
    def continues(self, debate: Debate, last: int) -> bool:
        """Whether another discussion round follows a complete round `last`."""

    @abstractmethod
    def turns(self, debate: Debate, rnd: int) -> list[TurnRequest]:
        """Prompts of round `rnd` for every active agent."""

    def shown(self, debate: Debate, target: str, rnd: int) -> list[tuple[Shown, Response]]:
        """Valid round-(rnd-1) responses `target` sees under the topology, in panel order."""
        panel = [a.name for a in debate.panel]
        out = []
        for agent in visible_sources(self.config.topology, panel, target):
            prev = debate.response(agent, rnd - 1)
            if prev is not None and prev.parse_status is ParseStatus.VALID and prev.answer is not None:
                out.append((Shown(agent, prev.answer, prev.reasoning or "", prev.confidence), prev))
        return out

    # -- ending ------------------------------------------------------------------------------
    @abstractmethod
    def team_answer(self, finals: list[Response]) -> str | None: ...

    def outcome(self, debate: Debate) -> Outcome:
        finals = final_answers(debate)
        team = self.team_answer(finals)
        majority = majority_vote([r.answer for r in finals])
        last = max((r.round for r in debate.responses), default=0)
        active = active_agents(debate, last + 1)
        last_round = [debate.response(a, last) for a in active]
        consensus = bool(active) and all(r is not None and r.parse_status is ParseStatus.VALID for r in last_round) \
            and len({r.answer for r in last_round if r is not None}) == 1
        q = debate.question
        correct = (is_equivalent(team, q.gold_answer, q.task, q.options)
                   if team is not None and q.gold_answer is not None else None)
        dropped = [r for r in debate.responses if r.parse_status is ParseStatus.ABSENT]
        error = "; ".join(f"{r.agent} dropped out in round {r.round}: {r.parse_error}" for r in dropped) or None
        if team is None:
            error = "no agent gave a valid answer" + (f" ({error})" if error else "")
        return Outcome(team_answer=team, majority_answer=majority, consensus=consensus, team_correct=correct,
                       rounds_used=debate.rounds(), error=error)
