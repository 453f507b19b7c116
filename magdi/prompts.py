"""The student's prompt, defined once: training node texts, `magdi eval` and the sft/dpo exports.

A question is shown to the student in one of two formats:

- `chat_template` (the default when the student's tokenizer has one): one user turn whose content
  is `question_text(q)`, rendered by the student's own chat template with the generation prompt;
  the answer is the assistant turn, ending with the template's end-of-turn token.
- `reference`: MAGDi's plain-text template (docs/method.md §2.2), exact spacing:
  `[INST] ### Question: {question}[/INST] ### Answer: {reasoning} So the answer is {answer}`.

Either way the question text is `question_text(q)` (choice options appended one way) and the
answer text is `answer_text(reasoning, answer)`, so the exports' conversational records rendered
by the same template give exactly the prompt the trainer trains on and `magdi eval` generates from.
Nothing here imports transformers: a tokenizer is passed in where the chat template is needed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Literal

from magdi.errors import UserError
from magdi.mag import Question

PromptKind = Literal["chat_template", "reference"]
CHAT_TEMPLATE: PromptKind = "chat_template"
REFERENCE: PromptKind = "reference"
KINDS: tuple[PromptKind, ...] = (CHAT_TEMPLATE, REFERENCE)

ANSWER_JOINER = " So the answer is "
_LETTERS = string.ascii_uppercase


def question_text(q: Question) -> str:
    """The question as the student reads it: the text, plus lettered options for choice questions.

    Options are appended as ` Answer choices: (A) ... (B) ...` unless the text already lists them
    all (MAGDi's reference files put them inside the question text).
    """
    text = q.text
    options = q.options[: len(_LETTERS)]
    if options and not all(opt in text for opt in options):
        text += " Answer choices: " + " ".join(f"({_LETTERS[i]}) {opt}" for i, opt in enumerate(options))
    return text


def answer_text(reasoning: str | None, answer: object) -> str:
    """`{reasoning} So the answer is {answer}`: what the student learns to write after the prompt."""
    return f"{(reasoning or '').strip()}{ANSWER_JOINER}{answer}".strip()


def user_messages(q: Question) -> list[dict[str, str]]:
    """The conversation before the answer, as the chat template and the exports see it."""
    return [{"role": "user", "content": question_text(q)}]


def reference_prompt(q: Question) -> str:
    """`[INST] ### Question: {question}[/INST] ### Answer:` (no trailing space; docs/method.md §2.2, §6.2)."""
    return f"[INST] ### Question: {question_text(q)}[/INST] ### Answer:"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_kind(requested: str, tokenizer: Any) -> PromptKind:
    """`auto` -> chat_template when the tokenizer has one, else reference; checks an explicit choice."""
    if requested == "auto":
        return CHAT_TEMPLATE if has_chat_template(tokenizer) else REFERENCE
    if requested not in KINDS:
        raise UserError(f"prompt format must be auto, {' or '.join(KINDS)}; got {requested!r}")
    if requested == CHAT_TEMPLATE and not has_chat_template(tokenizer):
        raise UserError("prompt format chat_template: the student's tokenizer has no chat template "
                         "(use reference)")
    return requested  # type: ignore[return-value]


@dataclass(frozen=True)
class PromptFormat:
    """Renders prompts and answers of one format; `tokenizer` is needed for `chat_template` only."""

    kind: PromptKind
    tokenizer: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"unknown prompt format {self.kind!r}; known: {', '.join(KINDS)}")
        if self.kind == CHAT_TEMPLATE and not has_chat_template(self.tokenizer):
            raise UserError("prompt format chat_template needs a tokenizer with a chat template")

    @property
    def text_has_special_tokens(self) -> bool:
        """Chat templates write BOS/turn markers into the text; the reference text has none."""
        return self.kind == CHAT_TEMPLATE

    def prompt(self, q: Question) -> str:
        """Everything before the student's answer (what generation starts from)."""
        if self.kind == REFERENCE:
            return reference_prompt(q)
        return self.tokenizer.apply_chat_template(user_messages(q), add_generation_prompt=True, tokenize=False)

    def completion(self, q: Question, answer: str) -> str:
        """The text after `prompt(q)` for an answer text: ` {answer}` (reference; EOS is a token the
        encoder adds), or the rendered assistant turn through its end-of-turn marker (chat)."""
        if self.kind == REFERENCE:
            return f" {answer}"
        prompt = self.prompt(q)
        messages = [*user_messages(q), {"role": "assistant", "content": answer}]
        full = self.tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
        if full.startswith(prompt):
            return full[len(prompt):]
        # a template whose conversation does not extend its generation prompt: close the turn with EOS
        return f"{answer}{self.tokenizer.eos_token or ''}"

    def text(self, q: Question, answer: str) -> str:
        """Prompt + completion: one training sequence (its prompt is exactly `prompt(q)`)."""
        return self.prompt(q) + self.completion(q, answer)
