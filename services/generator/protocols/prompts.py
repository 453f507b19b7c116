"""Prompt text of both protocols, in one place so that wording changes are reviewed together.

Wording follows ReConcile's `prepare_context_for_chat_assistant` and `claude_debate` (docs/method.md §4.2,
§4.4), with its defects fixed: options are lettered in the prompt AND in the demos (D18), and
the debate block lists every answer group (D14). Demos are rendered as JSON rather than as a
Python dict, because the same prompt demands strict JSON output.

The per-agent solution sentence is the contract with the simulated panel's parser
(`services.teachers.policy.parse_debate`): ``One agent solution: I think the answer is <answer> because
<reasoning> My confidence level is <c>.``, answer first, confidence last.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from magdi.mag import Question, TaskType
from magdi.protocol import Demo

LETTERS = "ABCDEFGHIJ"
SCHEMA_CONFIDENCE = ('Output your answer in json format, with the format as follows: {"reasoning": "", '
                     '"answer": "", "confidence_level": ""}. Please strictly output in JSON format.')
SCHEMA_PLAIN = ('Output your answer in json format, with the format as follows: {"reasoning": "", '
                '"answer": ""}. Please strictly output in JSON format.')
ASK_REASONING = "Please answer the question with step-by-step reasoning."
ASK_CONFIDENCE = ("Also, evaluate your confidence level (between 0.0 and 1.0) to indicate the possibility of "
                  "your answer being right.")
NO_IRRELEVANT = "Do not output irrelevant content."
REVIEW = ("Carefully review the following solutions from other agents as additional information, and provide "
          "your own answer and step-by-step reasoning to the question.")
STATE_AGREEMENT = "Clearly state which point of view you agree or disagree with and why."
DEBATE_INTRO = "These are the solutions to the problem from other agents:"
DEBATE_UPDATE = ("Using the reasoning from other agents as additional advice, can you give an updated answer? "
                 "Examine your solution and that of the other agents step by step.")


@dataclass(frozen=True)
class Shown:
    """A previous-round response as it appears in someone's prompt."""

    agent: str
    answer: str
    reasoning: str
    confidence: float | None


def options_block(options: Sequence[str]) -> str:
    lines = [f"({LETTERS[i]}) {text}" for i, text in enumerate(options)]
    return "The options are:\n" + "\n".join(lines) + "\nPlease select an option as your answer."


def answer_constraint(task: TaskType, options: Sequence[str]) -> str:
    match task:
        case TaskType.NUMBER:
            return 'Only place a single numeric value in the "answer" field.'
        case TaskType.YES_NO:
            return 'Only answer yes or no in the "answer" field.'
        case TaskType.CHOICE:
            letters = ",".join(LETTERS[: len(options) or 5])
            return f'Only place {letters} representing your choice in the "answer" field.'
        case TaskType.MATH:
            return 'Only place the final answer (a number or a LaTeX expression) in the "answer" field.'
        case _:
            return 'Only place the final answer, as short as possible, in the "answer" field.'


def question_text(text: str, options: Sequence[str]) -> str:
    body = f"Q: {text}"
    return f"{body}\n{options_block(options)}" if options else body


def demo_messages(demos: Sequence[Demo]) -> list[dict[str, str]]:
    """User/assistant turns, as ReConcile's chat variant; options lettered (D18)."""
    messages: list[dict[str, str]] = []
    for demo in demos:
        messages.append({"role": "user", "content": question_text(demo.question, demo.options)})
        messages.append({"role": "assistant",
                         "content": json.dumps({"reasoning": demo.explanation, "answer": demo.answer},
                                               ensure_ascii=False)})
    return messages


def round0_request(question: Question, *, confidence: bool) -> str:
    parts = [question_text(question.text, question.options), ASK_REASONING]
    if confidence:
        parts.append(ASK_CONFIDENCE)
    parts += [SCHEMA_CONFIDENCE if confidence else SCHEMA_PLAIN,
              answer_constraint(question.task, question.options), NO_IRRELEVANT]
    return "\n".join(parts)


def solution_sentence(shown: Shown) -> str:
    """ReConcile's first-person summary; the reasoning is kept verbatim (agreement sentences too)."""
    reasoning = " ".join(shown.reasoning.split())
    if reasoning and reasoning[-1] not in ".!?":
        reasoning += "."
    text = (f"I think the answer is {shown.answer} because {reasoning}" if reasoning
            else f"I think the answer is {shown.answer}.")
    if shown.confidence is not None:
        text += f" My confidence level is {shown.confidence:g}."
    return text


def group_answers(shown: Sequence[Shown]) -> list[tuple[str, list[Shown]]]:
    """Answer groups, most common first, ties in order of first appearance (Counter.most_common)."""
    groups: dict[str, list[Shown]] = {}
    for item in shown:
        groups.setdefault(item.answer, []).append(item)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))  # sort is stable


def debate_block(shown: Sequence[Shown]) -> str:
    """EVERY distinct answer with its supporters (D14: ReConcile keeps only the top two)."""
    paragraphs = []
    for answer, members in group_answers(shown):
        n = len(members)
        head = (f"There is 1 agent who thinks the answer is {answer}." if n == 1
                else f"There are {n} agents who think the answer is {answer}.")
        lines = "\n".join(f"One agent solution: {solution_sentence(m)}" for m in members)
        paragraphs.append(f"{head}\n{lines}")
    return "\n\n".join(paragraphs)


def reconcile_discussion(round0: str, shown: Sequence[Shown]) -> str:
    """§4.4: the full round-0 request, then review + agreement requests, the block, the schema."""
    return f"{round0}\n\n{REVIEW} {STATE_AGREEMENT}\n\n{debate_block(shown)}\n\n{SCHEMA_CONFIDENCE}"


def debate_update(question: Question, others: Sequence[Shown]) -> str:
    """Du et al.'s update request, with the others' solutions as answer-first sentences."""
    lines = "\n\n".join(f"One agent solution: {solution_sentence(s)}" for s in others)
    body = f"{DEBATE_INTRO}\n\n{lines}" if others else "No other agent gave a usable solution this round."
    return (f"{body}\n\n{DEBATE_UPDATE}\n{SCHEMA_PLAIN}\n"
            f"{answer_constraint(question.task, question.options)}")


def reask(error: str, confidence: bool) -> str:
    """The single bounded re-ask after an unparseable reply; quotes the parse error."""
    return (f"Your previous reply could not be used: {error}. Reply again with only the JSON object. "
            f"{SCHEMA_CONFIDENCE if confidence else SCHEMA_PLAIN}")
