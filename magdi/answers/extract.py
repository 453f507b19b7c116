"""Reading the answer out of a student's free-text continuation (evaluation; fixes docs/method.md D19)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from magdi.answers.latex import last_boxed, normalize_math
from magdi.answers.normalize import (
    _LETTERS,
    _NUMBER_RE,
    _YES_NO_RE,
    _letter,
    _normalize_text,
    _normalize_yes_no,
    _parse_number,
    _pre_clean_number,
    normalize_answer,
)
from magdi.mag import TaskType

logger = logging.getLogger(__name__)

ANSWER_MARKER = "so the answer is"
_SPECIAL_TOKENS = re.compile(
    r"</?s>|<\|[^|<>\n]{1,40}\|>|<pad>|<unk>|<eos>|<bos>|<end_of_turn>|<start_of_turn>|\[/?INST\]"
)
_NUMBER_MARKERS = re.compile(r"(?:####|(?:^|\n)\s*A:|\banswer(?:\s+is\b|\s*:))", re.IGNORECASE)


def _clean_generation(text: str) -> str:
    return _SPECIAL_TOKENS.sub("\n", text)


def extract_answer(text: str, task: TaskType, options: Sequence[str] = ()) -> str | None:
    """Normalised answer from a student's free-text continuation (D19).

    Reads only the first non-empty line after the last "So the answer is" when the marker is
    there (first match in it wins); otherwise the whole text, where the last match wins.
    """
    text = _clean_generation(text or "")
    pos = text.lower().rfind(ANSWER_MARKER)
    if pos >= 0:
        tail = text[pos + len(ANSWER_MARKER) :].lstrip(" \t:\n")
        line = tail.split("\n", 1)[0].strip()
        return _extract_from_tail(line, task, options) if line else None
    return _extract_from_text(text, task, options)


def _extract_from_tail(line: str, task: TaskType, options: Sequence[str]) -> str | None:
    if (whole := normalize_answer(line, task, options)) is not None:
        return whole
    if task is TaskType.NUMBER:
        m = _NUMBER_RE.search(_pre_clean_number(line))
        return _parse_number(m) if m else None
    if task is TaskType.YES_NO:
        m = _YES_NO_RE.search(line)
        return _normalize_yes_no(m.group(1)) if m else None
    if task is TaskType.CHOICE:
        return _first_choice(line, options)
    return None


def _choice_patterns(options: Sequence[str]) -> list[re.Pattern[str]]:
    letters = _LETTERS[: len(options)] if options else "ABCDE"
    pats = [re.compile(rf"(?<![\w(])[(\[]?([{letters}])\b(?![\w'])"),
            re.compile(rf"(?<![\w.,])([1-{min(len(options) or 5, 9)}])(?![\w]|[.,]\d)")]
    pats += [re.compile(rf"(?<!\w){re.escape(o.strip())}(?!\w)", re.IGNORECASE) for o in options if o.strip()]
    return pats


def _first_choice(line: str, options: Sequence[str]) -> str | None:
    best: tuple[int, int, str] | None = None  # (position, -length, letter)
    for k, pat in enumerate(_choice_patterns(options)):
        if not (m := pat.search(line)):
            continue
        if k == 0:
            letter = _letter(ord(m.group(1)) - ord("A"), options)
        elif k == 1:
            letter = _letter(int(m.group(1)) - 1, options)
        else:
            letter = _letter(k - 2, options)
        if letter and (best is None or (m.start(), -len(m.group(0))) < best[:2]):
            best = (m.start(), -len(m.group(0)), letter)
    return best[2] if best else None


def _extract_from_text(text: str, task: TaskType, options: Sequence[str]) -> str | None:
    if task is TaskType.NUMBER:
        markers = list(_NUMBER_MARKERS.finditer(text))
        if markers and (m := _NUMBER_RE.search(_pre_clean_number(text[markers[-1].end() :]))):
            return _parse_number(m)
        numbers = list(_NUMBER_RE.finditer(_pre_clean_number(text)))
        return _parse_number(numbers[-1]) if numbers else None
    if task is TaskType.YES_NO:  # only yes/no here: "true" is too common in prose
        found = re.findall(r"\b(yes|no)\b", text, re.IGNORECASE)
        return found[-1].lower() if found else None
    if task is TaskType.CHOICE:
        letters = _LETTERS[: len(options)] if options else "ABCDE"
        strong = re.compile(rf"(?:\(([{letters}])\)|\b(?:answer|option|choice)\s*(?:is)?\s*:?\s*([{letters}])\b)")
        found = strong.findall(text)
        return _letter(ord(found[-1][0] or found[-1][1]) - ord("A"), options) if found else None
    if task is TaskType.MATH:
        boxed = last_boxed(text)
        return normalize_math(boxed) or None if boxed is not None else None
    lines = [line for line in text.splitlines() if line.strip()]
    return _normalize_text(lines[-1]) or None if lines else None
