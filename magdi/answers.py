"""Answer parsing, normalisation and equivalence: the single rule set for the whole project.

The generator labels teacher answers, the importer re-labels imported MAGs and the trainer scores
the student with these same functions, so a node labelled "correct" during distillation is correct
by exactly the rule the evaluation applies (defect D9). The reference parsers' pitfalls (spec §6.3,
D15, D19, D20) are fixed here: word-bounded patterns, signs and thousands separators kept, only
the text after the last "So the answer is" read, and a sandboxed, time-limited SymPy check.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from magdi.mag import TaskType

logger = logging.getLogger(__name__)

SYMBOLIC_TIMEOUT_S = 2.0  # wall-clock limit of one SymPy comparison
NUMBER_REL_TOL = 1e-6
VOTE_TIE_EPS = 1e-9  # float sums closer than this count as a tie (first answer seen wins)
ANSWER_MARKER = "so the answer is"
_LETTERS = "ABCDEFGHIJ"

_SPECIAL_TOKENS = re.compile(
    r"</?s>|<\|[^|<>\n]{1,40}\|>|<pad>|<unk>|<eos>|<bos>|<end_of_turn>|<start_of_turn>|\[/?INST\]"
)
_NUM = r"[-+\u2212]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(
    rf"(?<![\w.,])(?P<num>{_NUM})(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?(?![\d])"
)
_NUMBER_MARKERS = re.compile(r"(?:####|(?:^|\n)\s*A:|\banswer(?:\s+is\b|\s*:))", re.IGNORECASE)
_YES_NO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_LETTER_ONLY = re.compile(
    r"^(?:(?:the\s+)?(?:answer|option|choice)(?:\s+is)?(?:\s*[:\-]\s*|\s+))?[(\[]?([A-Za-z])[)\]]?[.:)]?$",
    re.IGNORECASE,
)
_DIGIT_ONLY = re.compile(r"^[(\[]?([1-9])[)\]]?[.:)]?$")
_LABELLED_OPTION = re.compile(r"^[(\[]?([A-Z1-9])[)\].:]\s*(.+)$")


class AnswerParseError(ValueError):
    """A teacher output from which no answer object could be recovered; the message says why."""


# -- normalisation ---------------------------------------------------------------------------
def normalize_answer(answer: object, task: TaskType, options: Sequence[str] = ()) -> str | None:
    """Canonical string of an answer value (what a teacher put in its JSON "answer" field).

    Returns None when the value holds no answer of the task's kind, so that callers can mark the
    response invalid instead of guessing (D17).
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


# -- MATH ----------------------------------------------------------------------------------
def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}, or '\\boxed 5'), nested braces allowed."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + (6 if text.startswith("\\boxed", start) else 5)
    if i < len(text) and text[i] == " ":
        m = re.match(r" *([^\s$]+)", text[i:])
        return m.group(1) if m else None
    group = _brace_group(text, i)
    return group[0] if group else None


def _brace_group(text: str, i: int) -> tuple[str, int] | None:
    """The '{...}' at text[i] as (content, index after '}'); None if absent or unbalanced."""
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j], j + 1
    return None


def _unbox(text: str) -> str:
    boxed = last_boxed(text)
    return boxed if boxed is not None else text


def normalize_math(text: str) -> str:
    """Hendrycks-style string normalisation plus \\boxed, $...$ and trailing-period stripping."""
    s = _unbox(text.strip())
    s = s.strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    s = _unbox(s).strip().rstrip(".").strip()
    if m := re.fullmatch(r"\\(?:text|textbf|mbox|mathrm)\{(.*)\}", s):
        s = m.group(1)
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
                     ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""),
                     ("$", ""), ("\\%", ""), ("%", ""), ("\\,", ""), ("\\;", "")):
        s = s.replace(old, new)
    if re.search(r"\S\s*\\(?:text|mbox|mathrm)\{[^{}]*\}\s*$", s):  # trailing unit: "10\text{ cm}"
        s = re.sub(r"\s*\\(?:text|mbox|mathrm)\{[^{}]*\}\s*$", "", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0].strip()) <= 2:
        s = parts[1]
    s = _fix_sqrt(s).replace(" ", "")
    s = _fix_fracs(s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if s == "0.5":
        s = "\\frac{1}{2}"
    if m := re.fullmatch(r"(-?\d+)/(\d+)", s):
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    return s.rstrip(".")


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def _fix_fracs(s: str) -> str:
    """'\\frac12' -> '\\frac{1}{2}', '\\frac1{2}' -> '\\frac{1}{2}' (Hendrycks' _fix_fracs)."""
    s = re.sub(r"\\frac(\w)(\w)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\frac(\w)\{", r"\\frac{\1}{", s)


_ALLOWED_NAMES = {"sqrt", "pi"}


def latex_to_sympy_syntax(s: str) -> str:
    """Convert simple LaTeX (\\frac, \\sqrt, ^, \\cdot, \\pi) to SymPy syntax; ValueError otherwise.

    Only the returned string, checked against a whitelist, ever reaches `parse_expr`.
    """
    while (i := max(s.rfind("\\frac"), s.rfind("\\sqrt"))) >= 0:
        if s.startswith("\\frac", i):
            num = _brace_group(s, i + 5)
            den = _brace_group(s, num[1]) if num else None
            if not num or not den:
                raise ValueError("malformed \\frac")
            s = f"{s[:i]}(({num[0]})/({den[0]})){s[den[1]:]}"
        else:
            j, root = i + 5, None
            if s.startswith("[", j) and (k := s.find("]", j)) > 0:
                root, j = s[j + 1 : k], k + 1
            arg = _brace_group(s, j)
            if not arg:
                raise ValueError("malformed \\sqrt")
            body = f"sqrt({arg[0]})" if root is None else f"(({arg[0]})**(1/({root})))"
            s = f"{s[:i]}{body}{s[arg[1]:]}"
    for old, new in (("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\pi", "pi"),
                     ("^", "**"), ("{", "("), ("}", ")")):
        s = s.replace(old, new)
    if "\\" in s or "__" in s or len(s) > 300 or s.count("**") > 3:
        raise ValueError("unsupported expression")
    if re.search(r"[^\w\s+\-*/().,]", s, re.ASCII) or re.search(r"\.(?!\d)", s.replace(",", " ")):
        raise ValueError("unsupported characters")
    for name in re.findall(r"[A-Za-z_]\w*", s):
        if len(name) > 1 and name not in _ALLOWED_NAMES:
            raise ValueError(f"unsupported name {name!r}")
    if any(len(d) > 15 for d in re.findall(r"\d+", s)) or any(
        int(e) > 100 for e in re.findall(r"\*\*\(*(\d+)", s)
    ):
        raise ValueError("numbers too large")
    return s


def _sympy_equal(a: str, b: str) -> bool:
    import sympy
    from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

    global_dict = {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational,
                   "Symbol": sympy.Symbol, "Tuple": sympy.Tuple, "__builtins__": {}}
    local_dict = {"sqrt": sympy.sqrt, "pi": sympy.pi}
    transformations = (*standard_transformations, implicit_multiplication)

    def parse(s: str) -> object:
        return parse_expr(latex_to_sympy_syntax(s), local_dict=local_dict, global_dict=global_dict,
                          transformations=transformations)

    x, y = parse(a), parse(b)
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(sympy.simplify(p - q) == 0 for p, q in zip(x, y, strict=True))
    return bool(sympy.simplify(x - y) == 0)  # type: ignore[operator]


@functools.cache
def _warm_up_sympy() -> None:
    """Import SymPy and run one simplify outside any timer: the first use takes seconds."""
    _sympy_equal("x^2+2x+1", "(x+1)^2")


def symbolic_equal(a: str, b: str, timeout_s: float = SYMBOLIC_TIMEOUT_S) -> bool:
    """SymPy check in a daemon thread; timeout or any error means not equal (D20)."""
    _warm_up_sympy()
    result: list[bool] = []

    def work() -> None:
        try:
            result.append(_sympy_equal(a, b))
        except Exception as exc:  # any failure just means "not shown equal"
            logger.debug("symbolic check failed for %r vs %r: %s", a, b, exc)

    thread = threading.Thread(target=work, name="magdi-sympy", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        logger.debug("symbolic check timed out for %r vs %r", a, b)
        return False
    return bool(result and result[0])


# -- equivalence and extraction ---------------------------------------------------------------
def is_equivalent(pred: object, gold: object, task: TaskType, options: Sequence[str] = ()) -> bool:
    """Task equivalence of two answer values; a missing answer is never correct."""
    p, g = normalize_answer(pred, task, options), normalize_answer(gold, task, options)
    if p is None or g is None:
        return False
    if task is TaskType.NUMBER:
        return math.isclose(float(p), float(g), rel_tol=NUMBER_REL_TOL, abs_tol=1e-12)
    if p == g:
        return True
    if task is TaskType.CHOICE and options:  # ECQA repeats option texts: same text, same answer
        texts = {letter: _norm_option_text(o) for letter, o in zip(_LETTERS, options, strict=False)}
        return texts.get(p) is not None and texts.get(p) == texts.get(g)
    return task is TaskType.MATH and symbolic_equal(p, g)


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
    """Self-reported confidence in [0, 1]; 85 or '85' or '85%' mean 0.85 (D15); junk gives None."""
    if value is None or isinstance(value, bool):
        return None
    percent = False
    if isinstance(value, int | float):
        x = float(value)
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


def weighted_vote(answers: Sequence[str | None], confidences: Sequence[float | None]) -> str | None:
    """ReConcile's weighted_max (§4.8) over already-normalised answers.

    A None confidence contributes nothing (only the answer's one-off +1e-5): an agent that gave no
    confidence should not outweigh one that reported a low one (recalibrate(0.0) would give 0.1).
    """
    if len(answers) != len(confidences):
        raise ValueError("answers and confidences differ in length")
    scores: dict[str, float] = {}
    for answer, conf in zip(answers, confidences, strict=True):
        if answer is None:
            continue
        if answer not in scores:
            scores[answer] = 1e-5
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
