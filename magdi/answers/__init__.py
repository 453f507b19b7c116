"""Answer parsing, normalisation and equivalence: the single rule set for the whole project.

The generator labels teacher answers, the importer re-labels imported MAGs and the trainer scores
the student with these same functions, so a node labelled "correct" during distillation is correct
by exactly the rule the evaluation applies (defect D9). The reference parsers' pitfalls (docs/method.md §6.3,
D15, D19, D20) are fixed here: word-bounded patterns, signs and thousands separators kept, only
the text after the last "So the answer is" read, and a sandboxed, time-limited SymPy check.

- `normalize`: canonical answer strings per task, `is_equivalent`, `task_for_dataset`
- `extract`: the answer in a student's free-text continuation
- `latex`: MATH answers (`\\boxed{}`, normalisation, SymPy)
- `teacher`: teacher JSON output, confidences, recalibration and votes
"""

from magdi.answers.extract import extract_answer
from magdi.answers.latex import last_boxed, latex_to_sympy_syntax, normalize_math, symbolic_equal
from magdi.answers.normalize import is_equivalent, normalize_answer, task_for_dataset
from magdi.answers.teacher import (
    AnswerParseError,
    MissingConfidence,
    majority_vote,
    parse_confidence,
    parse_json_output,
    recalibrate_confidence,
    remove_agreement,
    weighted_vote,
)

__all__ = [
    "AnswerParseError",
    "MissingConfidence",
    "extract_answer",
    "is_equivalent",
    "last_boxed",
    "latex_to_sympy_syntax",
    "majority_vote",
    "normalize_answer",
    "normalize_math",
    "parse_confidence",
    "parse_json_output",
    "recalibrate_confidence",
    "remove_agreement",
    "symbolic_equal",
    "task_for_dataset",
    "weighted_vote",
]
