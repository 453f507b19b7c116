"""The `sft` export: chat-format supervised fine-tuning records from the correct MAG nodes.

One record per correct, parsed response: the question and the teacher's reasoning plus its
answer, with the MAGDi paper's cleaning (sentences that only "agree"/"disagree" with other agents
are dropped; §2.4, `answers.remove_agreement`). Every record carries its provenance (debate,
node, model, prompt hash), so a training example can always be traced back to the turn in the
graph that produced it.

The prompt is the trainer's (`magdi.prompts`), in one of two layouts:
- `chat_template` (default): TRL's conversational layout, `messages` = the user turn
  (`question_text`) and the assistant turn (`answer_text`). Rendered with the student's chat
  template, the user turn is exactly the prompt `magdi train` trains on and `magdi eval` uses.
- `reference`: TRL's prompt-completion layout with MAGDi's plain-text template,
  `prompt` = `[INST] ### Question: ...[/INST] ### Answer:`, `completion` = ` {reasoning} So the answer is {answer}`.
Both are what `datasets.load_dataset("json", data_files=...)` reads: every field has the same JSON
type in every record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from magdi import ids
from magdi.answers import remove_agreement
from magdi.errors import UserError
from magdi.mag import Debate, ParseStatus, Response
from magdi.prompts import ANSWER_JOINER, CHAT_TEMPLATE, REFERENCE, PromptFormat, answer_text, user_messages

__all__ = ["ANSWER_JOINER", "assistant_text", "debate_records", "iter_records"]


def assistant_text(response: Response) -> str:
    """Reasoning (agreement sentences removed) + " So the answer is " + answer."""
    return answer_text(remove_agreement(response.reasoning or ""), response.answer)


def check_prompt_format(prompt_format: str) -> str:
    if prompt_format not in (CHAT_TEMPLATE, REFERENCE):
        raise UserError(f"prompt format must be {CHAT_TEMPLATE} or {REFERENCE}, got {prompt_format!r}")
    return prompt_format


def as_prompt(debate: Debate, prompt_format: str) -> Any:
    """The prompt side of a record: the user turn(s) (chat) or the reference prompt text."""
    if prompt_format == CHAT_TEMPLATE:
        return user_messages(debate.question)
    return PromptFormat(REFERENCE).prompt(debate.question)


def as_answer(debate: Debate, text: str, prompt_format: str) -> Any:
    """The answer side: an assistant turn (chat) or the reference completion (` {answer}`)."""
    if prompt_format == CHAT_TEMPLATE:
        return [{"role": "assistant", "content": text}]
    return PromptFormat(REFERENCE).completion(debate.question, text)


def is_usable(response: Response) -> bool:
    """A parsed response with an answer; absent and invalid turns never become training text."""
    return response.parse_status is ParseStatus.VALID and response.answer is not None


def node_provenance(debate_id: str, response: Response) -> dict[str, Any]:
    """Where one response came from; the same keys and types for every node.

    Takes the debate's id, computed once per MAG by the caller: an imported MAG's id hashes its content.
    """
    return {
        "node_id": ids.response_id(debate_id, response.agent, response.round),
        "agent": response.agent,
        "round": response.round,
        "model": response.model,
        "prompt_hash": response.prompt_hash,
        "confidence": response.confidence,
    }


def debate_provenance(debate: Debate) -> dict[str, Any]:
    return {
        "debate_id": debate.id,
        "question_id": debate.question.id,
        "dataset": debate.question.dataset,
        "job_id": debate.job_id,
        "protocol": debate.protocol,
    }


def debate_records(debate: Debate, prompt_format: str = CHAT_TEMPLATE) -> Iterator[dict[str, Any]]:
    """SFT records of one MAG, in panel-then-round order; a repeated (prompt, answer text) is kept once."""
    prompt = as_prompt(debate, check_prompt_format(prompt_format))
    provenance = debate_provenance(debate)
    seen: set[str] = set()
    for r in debate.sorted_responses():
        if not (is_usable(r) and r.correct is True):
            continue
        text = assistant_text(r)
        if text in seen:
            continue
        seen.add(text)
        metadata = {**provenance, **node_provenance(provenance["debate_id"], r)}
        if prompt_format == CHAT_TEMPLATE:
            yield {"messages": [*prompt, *as_answer(debate, text, prompt_format)], "metadata": metadata}
        else:
            yield {"prompt": prompt, "completion": as_answer(debate, text, prompt_format), "metadata": metadata}


def iter_records(debates: Iterable[Debate], prompt_format: str = CHAT_TEMPLATE) -> Iterator[dict[str, Any]]:
    """The `EXPORTERS["sft"]` entry: streams, one MAG at a time."""
    for d in debates:
        yield from debate_records(d, prompt_format)
