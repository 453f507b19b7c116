"""Teacher output: tolerant JSON parsing, confidences, ReConcile's recalibration and votes."""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

logger = logging.getLogger(__name__)

VOTE_TIE_EPS = 1e-9  # float sums closer than this count as a tie (first answer seen wins)


class AnswerParseError(ValueError):
    """A teacher output from which no answer object could be recovered; the message says why."""

# -- teacher output ---------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|python|JSON)?\s*(.*?)```", re.DOTALL)


def _object_spans(text: str, max_starts: int = 50) -> list[str]:
    """Candidate '{...}' substrings: balanced objects (quote-aware), then the greedy REF span."""
    spans: list[str] = []
    starts = [i for i, c in enumerate(text) if c == "{"][:max_starts]
    for start in starts:
        depth, quote, j = 0, "", start
        while j < len(text):
            c = text[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = ""
            elif c == '"' or (c == "'" and not _is_apostrophe(text, j)):
                quote = c
            elif c in "{}":
                depth += 1 if c == "{" else -1
                if depth == 0:
                    spans.append(text[start : j + 1])
                    break
            j += 1
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        spans.append(text[first : last + 1])
    return list(dict.fromkeys(spans))


def _is_apostrophe(text: str, j: int) -> bool:
    return 0 < j < len(text) - 1 and text[j - 1].isalnum() and text[j + 1].isalnum()


def _try_parse(span: str) -> tuple[object, str | None]:
    """(parsed value, None) or (None, the last error message)."""
    no_trailing = re.sub(r",\s*([}\]])", r"\1", span)
    error = None
    for candidate in dict.fromkeys((span, no_trailing)):
        try:
            return json.loads(candidate, strict=False), None
        except json.JSONDecodeError as exc:
            error = f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    py = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", no_trailing)))
    py = py.replace("\n", " ")
    for candidate in dict.fromkeys((py, re.sub(r"(?<=\w)'(?=\w)", r"\\'", py))):
        try:
            return ast.literal_eval(candidate), None
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None, error


def parse_json_output(text: str) -> dict[str, object]:
    """Recover the teacher's {"reasoning", "answer", "confidence_level"} object, tolerantly.

    Keys are lower-cased and stripped. Raises AnswerParseError naming what was wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise AnswerParseError("empty output: no JSON object")
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    spans = [span for source in sources for span in _object_spans(source)]
    if not spans:
        problem = "no '{' in output" if "{" not in text else "'{' without a matching '}'"
        raise AnswerParseError(f"no JSON object: {problem}")
    errors: list[str] = []
    keys_seen: list[str] = []
    for span in spans:
        value, error = _try_parse(span)
        if error:
            errors.append(error)
        if not isinstance(value, dict):
            continue
        obj = {str(k).strip().lower(): v for k, v in value.items()}
        if "answer" in obj:
            return obj
        keys_seen = keys_seen or list(obj)
    if keys_seen:
        raise AnswerParseError(f"JSON object has no 'answer' key (keys: {', '.join(keys_seen)})")
    raise AnswerParseError(f"could not parse a JSON object: {errors[0] if errors else 'not an object'}")


def parse_confidence(value: object) -> float | None:
    """Self-reported confidence in [0, 1]; 85 or '85' or '85%' mean 0.85 (docs/method.md D15); junk gives None."""
    if value is None or isinstance(value, bool):
        return None
    percent = False
    if isinstance(value, int | float):
        try:
            x = float(value)
        except OverflowError:  # an integer beyond any float: not a confidence
            return None
    else:
        m = re.match(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)", str(value))
        if not m:
            return None
        x, percent = float(m.group(1)), bool(m.group(2))
    if math.isnan(x) or x < 0:
        return None
    if percent or x > 1:
        if x > 100:
            return None
        x /= 100
    return min(max(x, 0.0), 1.0)


def recalibrate_confidence(x: float) -> float:
    """ReConcile's trans_confidence (§4.7); values >= 1.0 map to 1.0 instead of crashing (D15)."""
    if x >= 1.0:
        return 1.0
    if x >= 0.9:
        return 0.8
    if x >= 0.8:
        return 0.5
    if x > 0.6:
        return 0.3
    return 0.1


MissingConfidence = Literal["zero", "ignore"]


def weighted_vote(answers: Sequence[str | None], confidences: Sequence[float | None], *,
                  missing_confidence: MissingConfidence = "zero") -> str | None:
    """ReConcile's weighted_max (§4.8) over already-normalised answers.

    Each distinct answer scores +1e-5 once plus the recalibrated confidence of every agent that
    gave it; the highest score wins, sums within VOTE_TIE_EPS count as a tie (first answer seen).
    A missing (None) confidence follows `missing_confidence`:
    - "zero" (ReConcile, the default): it counts as 0.0, which recalibrates to 0.1, exactly as
      ReConcile's `clean_output` + `trans_confidence` do;
    - "ignore": it adds nothing, so an agent that reported no confidence weighs less than one
      that reported a low one.
    """
    if len(answers) != len(confidences):
        raise ValueError("answers and confidences differ in length")
    if missing_confidence not in ("zero", "ignore"):
        raise ValueError(f"missing_confidence must be 'zero' or 'ignore', not {missing_confidence!r}")
    scores: dict[str, float] = {}
    for answer, conf in zip(answers, confidences, strict=True):
        if answer is None:
            continue
        if answer not in scores:
            scores[answer] = 1e-5
        if conf is None and missing_confidence == "zero":
            conf = 0.0
        if conf is not None:
            scores[answer] += recalibrate_confidence(conf)
    best: str | None = None
    for answer, score in scores.items():
        if best is None or score > scores[best] + VOTE_TIE_EPS:
            best = answer
    return best


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """Most common answer; ties go to the first answer seen (panel order)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)


def remove_agreement(text: str, prefixes: Sequence[str] = ("I agree", "I disagree")) -> str:
    """§2.4: split on '. ', drop pieces starting with a prefix (case-sensitive), rejoin with '. '."""
    return ". ".join(p for p in text.split(". ") if not p.startswith(tuple(prefixes)))
