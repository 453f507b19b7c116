"""MATH answers: \\boxed{} extraction, Hendrycks-style normalisation, and a sandboxed, time-limited SymPy check (docs/method.md D20)."""

from __future__ import annotations

import functools
import logging
import re
import threading

logger = logging.getLogger(__name__)

SYMBOLIC_TIMEOUT_S = 2.0  # wall-clock limit of one SymPy comparison


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
