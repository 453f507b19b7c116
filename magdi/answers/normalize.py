"""Canonical answer strings per task, and task equivalence (what "correct" means everywhere)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from magdi.answers.latex import _unbox, normalize_math, symbolic_equal
from magdi.mag import TaskType

logger = logging.getLogger(__name__)

NUMBER_REL_TOL = 1e-6  # only between two non-integers (see `is_equivalent`)
_LETTERS = "ABCDEFGHIJ"
_NUM = r"[-+\u2212]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(
    rf"(?<![\w.,])(?P<num>{_NUM})(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?![\d])"
)
_YES_NO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_LETTER_ONLY = re.compile(
    r"^(?:(?:the\s+)?(?:answer|option|choice)(?:\s+is)?(?:\s*[:\-]\s*|\s+))?[(\[]?([A-Za-z])[)\]]?[.:)]?$",
    re.IGNORECASE,
)
_DIGIT_ONLY = re.compile(r"^[(\[]?([1-9])[)\]]?[.:)]?$")
_LABELLED_OPTION = re.compile(r"^[(\[]?([A-Z1-9])[)\].:]\s*(.+)$")


# -- normalisation ---------------------------------------------------------------------------
def normalize_answer(answer: object, task: TaskType, options: Sequence[str] = ()) -> str | None:
    """Canonical string of an answer value (what a teacher put in its JSON "answer" field).

    Returns None when the value holds no answer of the task's kind, so that callers can mark the
    response invalid instead of guessing (docs/method.md D17).
    """
    if answer is None:
        return None
    if isinstance(answer, list | tuple) and len(answer) == 1:
        answer = answer[0]
    if isinstance(answer, bool):
        if task is TaskType.YES_NO:
            return "yes" if answer else "no"
        return str(answer).lower() if task is TaskType.TEXT else None
    if isinstance(answer, int | float) and task is TaskType.NUMBER:
        return _format_number(Decimal(repr(float(answer))) if isinstance(answer, float) else Decimal(answer))
    text = str(answer).strip()
    if not text:
        return None
    match task:
        case TaskType.NUMBER:
            return _normalize_number(text)
        case TaskType.YES_NO:
            return _normalize_yes_no(text)
        case TaskType.CHOICE:
            return _normalize_choice(text, options)
        case TaskType.MATH:
            return normalize_math(text) or None
        case _:
            return _normalize_text(text) or None


def _format_number(value: Decimal | Fraction) -> str | None:
    """Plain decimal text ('18', '-3', '0.5'); stable under re-normalisation (idempotent)."""
    if isinstance(value, Fraction):
        if _only_2_5(value.denominator):  # terminating decimal: exact
            value = Decimal(value.numerator) / Decimal(value.denominator)
        else:
            value = Decimal(repr(float(value)))
    if not value.is_finite():
        return None
    if value and not -50 <= value.adjusted() <= 50:  # keep absurd exponents from expanding
        as_float = float(value)
        return repr(as_float) if math.isfinite(as_float) and as_float else None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "+0") else text


def _only_2_5(n: int) -> bool:
    for p in (2, 5):
        while n % p == 0:
            n //= p
    return n == 1


def _parse_number(match: re.Match[str]) -> str | None:
    raw = match.group("num").replace(",", "").replace("\u2212", "-")
    try:
        value, den = Decimal(raw), match.group("den")
        if den is None or Decimal(den) == 0:
            return _format_number(value)
        if value and not -50 <= value.adjusted() <= 50:  # no exact arithmetic on absurd numbers
            return _format_number(Decimal(repr(float(value) / float(den))))
        return _format_number(Fraction(value) / Fraction(Decimal(den)))
    except (InvalidOperation, ValueError, OverflowError):
        return None


def _pre_clean_number(text: str) -> str:
    text = _unbox(text)
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    return text.replace("\\$", "$").replace("\\!", "").replace("\\,", "")


def _normalize_number(text: str) -> str | None:
    """First number in the value; after the last '=' when there is one ('2 * 9 = 18')."""
    text = _pre_clean_number(text)
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    match = _NUMBER_RE.search(text)
    return _parse_number(match) if match else None


def _normalize_yes_no(text: str) -> str | None:
    """The whole value, or its first word when punctuation follows it ('Yes, because ...')."""
    cleaned = text.strip(" \t\n\"'*`").lower()
    match = re.match(r"^(yes|no|true|false)(?:\s*$|\s*[.,;:!)\-])", cleaned)
    if not match:
        return None
    return "yes" if match.group(1) in ("yes", "true") else "no"


def _norm_option_text(text: str) -> str:
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,;:!?\"'`*()[]")


def _letter(index: int, options: Sequence[str]) -> str | None:
    limit = len(options) if options else 9
    return _LETTERS[index] if 0 <= index < min(limit, len(_LETTERS)) else None


def _normalize_choice(text: str, options: Sequence[str]) -> str | None:
    """Canonical option letter. Order: explicit letter, option text, then a 1-based digit."""
    text = text.strip().strip("*`\"'").strip()
    if m := _LETTER_ONLY.match(text):
        return _letter(ord(m.group(1).upper()) - ord("A"), options)
    norm_options = [_norm_option_text(o) for o in options]
    cleaned = _norm_option_text(text)
    if cleaned and cleaned in norm_options:
        return _letter(norm_options.index(cleaned), options)
    if m := _DIGIT_ONLY.match(text):
        return _letter(int(m.group(1)) - 1, options)
    if m := _LABELLED_OPTION.match(text):  # "B) pink" / "2. pink": trust a letter, check a digit
        label, rest = m.group(1), _norm_option_text(m.group(2))
        if label.isalpha():
            return _letter(ord(label) - ord("A"), options)
        index = int(label) - 1
        if not options or (index < len(norm_options) and norm_options[index] == rest):
            return _letter(index, options)
    return None


def _normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip().rstrip(".,;:!?").strip()



# -- equivalence and extraction ---------------------------------------------------------------
def is_equivalent(pred: object, gold: object, task: TaskType, options: Sequence[str] = ()) -> bool:
    """Task equivalence of two answer values; a missing answer is never correct.

    Numbers: equal as exact decimals whenever either side is an integer (an integer gold such as
    GSM8K's is matched exactly: 1000001 is not 1000000); a relative tolerance of NUMBER_REL_TOL
    applies only between two non-integers, where the gold itself is a rounded decimal (1/3 as
    0.3333333). Applying it only then keeps the rule symmetric.
    """
    p, g = normalize_answer(pred, task, options), normalize_answer(gold, task, options)
    if p is None or g is None:
        return False
    if task is TaskType.NUMBER:
        return _numbers_equal(p, g)
    if p == g:
        return True
    if task is TaskType.CHOICE and options:  # ECQA repeats option texts: same text, same answer
        texts = {letter: _norm_option_text(o) for letter, o in zip(_LETTERS, options, strict=False)}
        return texts.get(p) is not None and texts.get(p) == texts.get(g)
    return task is TaskType.MATH and symbolic_equal(p, g)


def _numbers_equal(a: str, b: str) -> bool:
    """Two canonical number strings: exact unless both are non-integers (then within NUMBER_REL_TOL)."""
    x, y = Decimal(a), Decimal(b)
    if x == x.to_integral_value() or y == y.to_integral_value():
        return x == y
    return math.isclose(float(x), float(y), rel_tol=NUMBER_REL_TOL, abs_tol=1e-12)


_TASK_BY_TOKEN = {
    "gsm8k": TaskType.NUMBER, "strategyqa": TaskType.YES_NO, "sqa": TaskType.YES_NO,
    "ecqa": TaskType.CHOICE, "commonsenseqa": TaskType.CHOICE, "csqa": TaskType.CHOICE,
    "arc": TaskType.CHOICE, "aqua": TaskType.CHOICE, "math": TaskType.MATH,
}


def task_for_dataset(name: str) -> TaskType:
    """Task of a dataset name such as 'gsm8k', 'GSM8K-train', 'arc_challenge' or 'aqua-rat'."""
    lowered = name.strip().lower()
    first = re.split(r"[^a-z0-9]+", lowered)[0]
    if first in _TASK_BY_TOKEN:
        return _TASK_BY_TOKEN[first]
    compact = re.sub(r"[^a-z0-9]", "", lowered)
    for key in ("strategyqa", "commonsenseqa", "gsm8k", "aquarat", "arcchallenge", "arceasy"):
        if compact.startswith(key):
            return _TASK_BY_TOKEN.get(key, TaskType.CHOICE)
    return TaskType.TEXT
