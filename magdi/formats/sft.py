"""The `sft` export: chat-format supervised fine-tuning records from the correct MAG nodes.

One record per correct, parsed response: the question as the user turn and the teacher's reasoning
plus its answer as the assistant turn, with the MAGDi paper's cleaning (sentences that only
"agree"/"disagree" with other agents are dropped; §2.4, `answers.remove_agreement`). Every record
carries its provenance (debate, node, model, prompt hash), so a training example can always be
traced back to the turn in the graph that produced it.

The record layout is what `datasets.load_dataset("json", data_files=...)` and TRL's SFTTrainer
read as a conversational dataset: every field has the same JSON type in every record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from magdi.answers import remove_agreement
from magdi.mag import Debate, ParseStatus, Response

ANSWER_JOINER = " So the answer is "


def question_prompt(debate: Debate) -> str:
    """The user turn: the question, with its options for choice tasks (the text alone is ambiguous)."""
    q = debate.question
    if not q.options:
        return q.text
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    choices = " ".join(f"({letters[i]}) {o}" for i, o in enumerate(q.options[: len(letters)]))
    return f"{q.text}\nAnswer choices: {choices}"


def assistant_text(response: Response) -> str:
    """Reasoning (agreement sentences removed) + " So the answer is " + answer."""
    reasoning = remove_agreement(response.reasoning or "").strip()
    return f"{reasoning}{ANSWER_JOINER}{response.answer}".strip()


def is_usable(response: Response) -> bool:
    """A parsed response with an answer; absent and invalid turns never become training text."""
    return response.parse_status is ParseStatus.VALID and response.answer is not None


def node_provenance(debate: Debate, response: Response) -> dict[str, Any]:
    """Where one response came from; the same keys and types for every node."""
    return {
        "node_id": debate.response_id(response.agent, response.round),
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


def debate_records(debate: Debate) -> Iterator[dict[str, Any]]:
    """SFT records of one MAG, in panel-then-round order; a repeated (prompt, answer text) is kept once."""
    prompt = question_prompt(debate)
    seen: set[str] = set()
    for r in debate.sorted_responses():
        if not (is_usable(r) and r.correct is True):
            continue
        text = assistant_text(r)
        if text in seen:
            continue
        seen.add(text)
        yield {
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}],
            "metadata": {**debate_provenance(debate), **node_provenance(debate, r)},
        }


def iter_records(debates: Iterable[Debate]) -> Iterator[dict[str, Any]]:
    """The `EXPORTERS["sft"]` entry: streams, one MAG at a time."""
    for d in debates:
        yield from debate_records(d)
