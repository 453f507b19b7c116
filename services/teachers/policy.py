"""The simulated teachers' discussion rule: seeded, documented, and blind to correctness.

Round 0 replays the model's own recorded solution. Its confidence never looks at `is_correct`:
it stands in for self-consistency, ``c = 0.6 + 0.1 * n + jitter`` (capped at 0.99), where n is
the number of *other* recorded models whose final answer agrees (0..3) and jitter is a seeded
uniform draw in ``[0, confidence_jitter)``.

A discussion round is recognised by the debate block in the prompt (see `parse_debate` for the
exact text contract). For every answer in the block we sum the confidences stated for it. The
agent's "own" answer is its recorded round-0 answer (the simulation keeps no memory between
calls; its prior belief is re-weighed against each block). With
``p_switch = sigmoid(k * (support_best_other - support_own) - bias)`` and a seeded uniform u,
the agent adopts the best-supported other answer iff ``u < p_switch``; otherwise it keeps its
own. u is seeded by (seed, model, question) only, not by the round: it acts as the agent's
stubbornness on that question, so stronger support can only make it more willing to switch,
and an agent that switched does not flip back at random in the next round (over 400 questions
x 3 agents, a per-round u made 15% of switches revert the round after; this makes it 5%). The
round still enters through the block (it seeds the confidence jitter). After
switching it replays a real recorded solution (any of the four models) that reaches the adopted
answer; if none does, it writes a short templated reasoning that says it is simulated. Both
discussion replies open with an "I agree with ..." / "I disagree with ..." sentence, as
ReConcile asks. Confidence in a discussion round uses the same formula with n = the number of
other agents in the block that gave the chosen answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass

from services.teachers.replay import RecordedQuestion, normalize_number, normalize_text

logger = logging.getLogger(__name__)

_NATURAL_ANSWER = re.compile(
    r"\bI think the answer is\s+(?P<ans>.{1,80}?)\s*(?:\bbecause\b|\.?\s*My confidence level is|\.(?:\s|$))",
    re.IGNORECASE | re.DOTALL,
)
_NATURAL_CONF = re.compile(
    r"My confidence level is\s*:?\s*['\"]?(?P<c>\d*\.?\d+)\s*(?P<pct>%?)", re.IGNORECASE
)
_FRAGMENT = re.compile(r"\{[^{}]*\}")
_JSON_ANSWER = re.compile(r"[\"']answer[\"']\s*:\s*(?:\"(?P<a>[^\"]*)\"|'(?P<b>[^']*)'|(?P<c>-?[\d.,]+))")
_JSON_CONF = re.compile(
    r"[\"']confidence(?:_level)?[\"']\s*:\s*(?:\"(?P<a>[^\"]*)\"|'(?P<b>[^']*)'|(?P<c>-?[\d.]+%?))"
)
_BLOCK_LABEL = re.compile(r"One agent solution|agents? think the answer is", re.IGNORECASE)
DEFAULT_STATED_CONFIDENCE = 0.5  # used when a natural-language entry states no confidence


@dataclass(frozen=True)
class DebateEntry:
    """One other-agent solution read from a debate block."""

    answer: str  # normalised: canonical number, else lower-cased stripped text
    confidence: float


@dataclass(frozen=True)
class TeacherReply:
    """What a simulated teacher says; `render` turns it into the JSON content string."""

    reasoning: str
    answer: str
    confidence: float
    kind: str  # "round0" | "keep" | "switch" | "unknown"
    templated: bool = False  # True when the reasoning is not a recorded model's text

    def render(self) -> str:
        payload = {"reasoning": self.reasoning, "answer": self.answer, "confidence_level": self.confidence}
        return json.dumps(payload, ensure_ascii=False)


def seeded_unit(*parts: object) -> float:
    """A uniform draw in [0, 1) that depends only on `parts` (stable across processes)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def normalize_debate_answer(raw: str) -> str:
    """Numbers to canonical form so '18', '$18.00' and '18.' count as one answer."""
    cleaned = raw.strip().strip("\"'`.,;:")
    number = normalize_number(cleaned)
    return number if number else cleaned.lower()


def _parse_confidence(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip().strip("\"'")
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        return None
    if text.endswith("%") or 1.0 < value <= 100.0:
        value /= 100.0
    return min(max(value, 0.0), 1.0)


def parse_debate(text: str) -> list[DebateEntry]:
    """Read the other agents' answers and confidences out of a debate block.

    Contract (the first that yields anything wins):
    1. ReConcile's sentence, normally behind a "One agent solution:" label:
       ``I think the answer is <answer> because <reasoning> My confidence level is <c>.``
       The answer ends at the first " because", "My confidence level is" or sentence-ending
       period; the confidence is the last "My confidence level is <c>" before the next entry
       (<c> a float, or a percentage). A missing confidence counts as 0.5.
    2. JSON-like fragments ``{... "answer": "18", ..., "confidence_level": 0.9 ...}`` (single or
       double quotes, no nested braces); both keys must be present and non-empty, so the empty
       output schema and few-shot demos (which state no confidence) are ignored.
    """
    entries: list[DebateEntry] = []
    matches = list(_NATURAL_ANSWER.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        segment = text[match.start() : end]
        confs = list(_NATURAL_CONF.finditer(segment))
        conf = None
        if confs:
            last = confs[-1]
            conf = _parse_confidence(last.group("c") + last.group("pct"))
        answer = normalize_debate_answer(match.group("ans"))
        if answer:
            entries.append(DebateEntry(answer, DEFAULT_STATED_CONFIDENCE if conf is None else conf))
    if entries:
        return entries
    for fragment in _FRAGMENT.finditer(text):
        body = fragment.group(0)
        a_match, c_match = _JSON_ANSWER.search(body), _JSON_CONF.search(body)
        if a_match is None or c_match is None:
            continue
        raw_answer = next((g for g in a_match.group("a", "b", "c") if g is not None), "")
        conf = _parse_confidence(next((g for g in c_match.group("a", "b", "c") if g is not None), None))
        answer = normalize_debate_answer(raw_answer)
        if answer and conf is not None:
            entries.append(DebateEntry(answer, conf))
    return entries


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class DiscussionPolicy:
    """Turns (model, prompt, recorded question) into a deterministic TeacherReply."""

    def __init__(
        self, seed: int, switch_k: float = 4.0, switch_bias: float = 1.0, jitter: float = 0.05
    ) -> None:
        self.seed = seed
        self.switch_k = switch_k
        self.switch_bias = switch_bias
        self.jitter = jitter

    def confidence(self, n_agree: int, *key: object) -> float:
        """0.6 + 0.1 * n_agree (n capped at 3) + seeded jitter in [0, jitter), capped at 0.99."""
        base = 0.6 + 0.1 * min(max(n_agree, 0), 3)
        value = base + self.jitter * seeded_unit(self.seed, "confidence", *key)
        return round(min(value, 0.99), 2)

    def p_switch(self, support_other: float, support_own: float) -> float:
        return _sigmoid(self.switch_k * (support_other - support_own) - self.switch_bias)

    def reply(self, model: str, question: RecordedQuestion | None, debate_text: str) -> TeacherReply:
        """The reply of recorded `model`; `debate_text` is the prompt text after the question."""
        if question is None or model not in question.solutions:
            return TeacherReply(
                "I could not find this question among the ones I have answered before, so I cannot give "
                "a reliable answer. (Simulated teacher: question not in the replay bank.)",
                "unknown",
                0.1,
                "unknown",
                templated=True,
            )
        own = question.solutions[model]
        entries = parse_debate(debate_text)
        if not entries and _BLOCK_LABEL.search(debate_text) is None:
            n_agree = len(question.agreeing_models(own.answer, exclude=model))
            conf = self.confidence(n_agree, model, question.index, "round0")
            return TeacherReply(own.reasoning, own.answer, conf, "round0")
        return self._discuss(model, question, entries, debate_text)

    def _discuss(
        self, model: str, question: RecordedQuestion, entries: list[DebateEntry], debate_text: str
    ) -> TeacherReply:
        own = question.solutions[model]
        block_key = hashlib.sha256(normalize_text(debate_text).encode("utf-8")).hexdigest()[:16]
        support: dict[str, float] = {}
        counts: dict[str, int] = {}
        for entry in entries:
            support[entry.answer] = support.get(entry.answer, 0.0) + entry.confidence
            counts[entry.answer] = counts.get(entry.answer, 0) + 1
        own_support = support.get(own.answer, 0.0)
        others = [a for a in support if a != own.answer]  # insertion order breaks ties
        if not entries:
            logger.debug("debate block found but unreadable; %s keeps %s", model, own.answer)
        if not others:
            n_agree = max(counts.get(own.answer, 0) - 1, 0)
            conf = self.confidence(n_agree, model, question.index, block_key)
            opening = (
                f"I agree with the other agents that the answer is {own.answer}."
                if entries
                else f"I could not read the other agents' answers clearly, so I keep my answer {own.answer}."
            )
            return TeacherReply(f"{opening} {own.reasoning}", own.answer, conf, "keep")
        best = max(others, key=lambda a: support[a])
        p = self.p_switch(support[best], own_support)
        u = seeded_unit(self.seed, "switch", model, question.index)
        logger.debug(
            "%s q%d: own=%s (%.2f) best=%s (%.2f) p=%.3f u=%.3f",
            model,
            question.index,
            own.answer,
            own_support,
            best,
            support[best],
            p,
            u,
        )
        if u >= p:
            n_agree = max(counts.get(own.answer, 0) - 1, 0)
            conf = self.confidence(n_agree, model, question.index, block_key)
            opening = (
                f"I disagree with the agents who think the answer is {best}: checking my solution again, "
                f"I still get {own.answer or 'my earlier result'}."
            )
            return TeacherReply(f"{opening} {own.reasoning}", own.answer, conf, "keep")
        conf = self.confidence(counts[best], model, question.index, block_key)
        before = f"from {own.answer} " if own.answer else ""
        opening = (
            f"I agree with the agents who think the answer is {best}; after reviewing their solutions "
            f"I change my answer {before}to {best}."
        )
        recorded = question.solution_with_answer(best, prefer=model)
        if recorded is not None:
            return TeacherReply(f"{opening} {recorded.reasoning}", best, conf, "switch")
        templated = (
            f"{opening} Their reasoning is more convincing than mine, so I adopt {best}. "
            f"(Simulated reasoning: no recorded solution reaches {best}, so this text is templated.)"
        )
        return TeacherReply(templated, best, conf, "switch", templated=True)
