"""ReConcile (Chen et al. 2023), docs/method.md §4: round 0 with convincing samples, then discussion rounds
while the agents disagree, each agent shown every answer group of the previous round with the
agents' reasoning and self-reported confidence; team answer = recalibrated-confidence vote.
"""

from __future__ import annotations

from magdi.answers import weighted_vote
from magdi.mag import Debate, ParseStatus, Response
from services.generator.protocols import prompts
from services.generator.protocols.base import Protocol, TurnRequest, active_agents


class ReconcileProtocol(Protocol):
    name = "reconcile"
    asks_confidence = True

    def continues(self, debate: Debate, last: int) -> bool:
        """§4.6: another round only while the valid answers of round `last` disagree."""
        answers = {r.answer for r in debate.responses
                   if r.round == last and r.parse_status is ParseStatus.VALID}
        return len(answers) > 1

    def turns(self, debate: Debate, rnd: int) -> list[TurnRequest]:
        question = debate.question
        round0 = prompts.round0_request(question, confidence=True)
        requests = []
        for agent in active_agents(debate, rnd):
            content, sources = round0, ()
            if rnd > 0:
                shown = self.shown(debate, agent, rnd)
                content = prompts.reconcile_discussion(round0, [s for s, _ in shown])
                sources = tuple((r.agent, r.round) for _, r in shown)
            # every call is a fresh conversation: demos, then the (extended) request (§4.4)
            messages = [*prompts.demo_messages(self.demos.get(agent, [])), {"role": "user", "content": content}]
            requests.append(TurnRequest(agent, rnd, messages, sources))
        return requests

    def team_answer(self, finals: list[Response]) -> str | None:
        """§4.8 weighted_max over each agent's final answer (recalibration inside weighted_vote)."""
        return weighted_vote([r.answer for r in finals], [r.confidence for r in finals],
                             missing_confidence=self.config.missing_confidence)
