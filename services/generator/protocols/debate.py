"""Multi-agent debate in the style of Du et al. (2023): no confidence, a fixed number of rounds.

Round r shows each agent the round r-1 solutions of the agents it may see; when the topology
lets it see itself, its own previous answer comes back as its earlier assistant turn (Du et al.
keep the conversation). Only the previous round is replayed, so INFORMS edges stay between
consecutive rounds and match the prompt exactly. Team answer = plain majority.
"""

from __future__ import annotations

import json

from magdi.answers import majority_vote
from magdi.mag import Debate, Response
from services.generator.protocols import prompts
from services.generator.protocols.base import Protocol, TurnRequest, active_agents


class DebateProtocol(Protocol):
    name = "debate"
    asks_confidence = False

    def continues(self, debate: Debate, last: int) -> bool:
        return True  # fixed rounds: `max_rounds` discussion rounds, consensus or not

    def turns(self, debate: Debate, rnd: int) -> list[TurnRequest]:
        question = debate.question
        first = {"role": "user", "content": prompts.round0_request(question, confidence=False)}
        requests = []
        for agent in active_agents(debate, rnd):
            messages = [*prompts.demo_messages(self.demos.get(agent, [])), first]
            sources: tuple[tuple[str, int], ...] = ()
            if rnd > 0:
                shown = self.shown(debate, agent, rnd)
                own = [(s, r) for s, r in shown if s.agent == agent]
                others = [(s, r) for s, r in shown if s.agent != agent]
                if own:
                    s = own[0][0]
                    messages.append({"role": "assistant", "content": json.dumps(
                        {"reasoning": s.reasoning, "answer": s.answer}, ensure_ascii=False)})
                messages.append({"role": "user", "content": prompts.debate_update(question, [s for s, _ in others])})
                sources = tuple((r.agent, r.round) for _, r in own + others)
            requests.append(TurnRequest(agent, rnd, messages, sources))
        return requests

    def team_answer(self, finals: list[Response]) -> str | None:
        return majority_vote([r.answer for r in finals])
