"""The `dpo` export: preference pairs (chosen = a correct response, rejected = an incorrect one).

Both sides of a pair come from the SAME MAG, so they answer the same prompt; this is the
contrast MAGDi's margin-ranking loss learns from, written in TRL's preference format for
DPO-style trainers, with the trainer's prompt (`magdi.prompts`, as in the sft export):
`chat_template` (default) gives message lists, `reference` gives MAGDi's plain-text prompt and
completions.

Pairing is linear in the MAG size, not quadratic: every incorrect response is the rejected side of
exactly one pair, whose chosen side is a correct response from the same round if there is one
(else the nearest round, earlier first), the most confident among those, then panel order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from magdi.formats.sft import (
    as_answer,
    as_prompt,
    assistant_text,
    check_prompt_format,
    debate_provenance,
    is_usable,
    node_provenance,
)
from magdi.mag import Debate, Response
from magdi.prompts import CHAT_TEMPLATE


def _pick_chosen(rejected: Response, correct: list[Response], order: dict[str, int]) -> Response:
    def rank(r: Response) -> tuple[int, int, float, int]:
        return (abs(r.round - rejected.round), r.round, -(r.confidence or 0.0), order[r.agent])

    return min(correct, key=rank)


def debate_pairs(debate: Debate, prompt_format: str = CHAT_TEMPLATE) -> Iterator[dict[str, Any]]:
    """Preference pairs of one MAG; none when it has no correct or no incorrect response."""
    responses = [r for r in debate.sorted_responses() if is_usable(r) and r.correct is not None]
    correct = [r for r in responses if r.correct]
    wrong = [r for r in responses if not r.correct]
    if not correct or not wrong:
        return
    order = {a.name: i for i, a in enumerate(debate.panel)}
    prompt = as_prompt(debate, check_prompt_format(prompt_format))
    provenance = debate_provenance(debate)
    debate_id = provenance["debate_id"]
    for rejected in wrong:
        chosen = _pick_chosen(rejected, correct, order)
        chosen_text, rejected_text = assistant_text(chosen), assistant_text(rejected)
        if chosen_text == rejected_text:  # cannot happen for distinct answers; guards odd imports
            continue
        yield {
            "prompt": prompt,
            "chosen": as_answer(debate, chosen_text, prompt_format),
            "rejected": as_answer(debate, rejected_text, prompt_format),
            "metadata": {
                **provenance,
                "chosen": {**node_provenance(debate_id, chosen), "answer": chosen.answer},
                "rejected": {**node_provenance(debate_id, rejected), "answer": rejected.answer},
            },
        }


def iter_records(debates: Iterable[Debate], prompt_format: str = CHAT_TEMPLATE) -> Iterator[dict[str, Any]]:
    """The `EXPORTERS["dpo"]` entry: streams, one MAG at a time."""
    for d in debates:
        yield from debate_pairs(d, prompt_format)
