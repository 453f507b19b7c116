"""The replay bank: real solutions that four real models wrote for the GSM8K test questions.

The simulated panel never invents a round-0 answer; it looks the question up here and replays
what the recorded model wrote. Both files are given by the caller (the product does not know
where benchmark data lives). Prompts are matched to questions by whitespace-collapsed text, so
the generator may wrap the question in any prompt template as long as the question text itself
appears verbatim (up to whitespace).

The final answer of a recorded solution is the number after its last ``A:`` (or ``####``).
The extraction is local and deliberately small: it must agree with itself (the policy compares
recorded answers with each other and with answers read from debate blocks), not with any grader.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

logger = logging.getLogger(__name__)

RECORDED_MODELS: tuple[str, ...] = (
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
)

_WS = re.compile(r"\s+")
_FINAL_MARKER = re.compile(r"(?:^|\n)\s*(?:A:|####)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_Q_MARKER = re.compile(r"Q:\s*")
_KEY_CHARS = 48  # prefix length used to find candidate questions after a "Q:" marker


def normalize_text(text: str) -> str:
    """Collapse all whitespace runs to one space and strip: the key prompts are matched on."""
    return _WS.sub(" ", text).strip()


def normalize_number(text: str) -> str:
    """Canonical string of the first number in `text` ("1,000.50" -> "1000.5", "1/5" -> "0.2").

    Returns "" when `text` holds no number. Non-numeric answers are the caller's business.
    """
    match = _NUMBER.search(text.replace("$", ""))
    if match is None:
        return ""
    raw = match.group(0).replace(",", "").replace(" ", "")
    try:
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return ""
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    text_value = f"{as_float:.10f}".rstrip("0").rstrip(".")
    return text_value or "0"


def split_final_answer(solution: str) -> tuple[str, str]:
    """Split a recorded solution into (reasoning without the final-answer line, normalised answer).

    Solutions that were cut off before an ``A:`` line keep all their text and get answer "".
    """
    markers = list(_FINAL_MARKER.finditer(solution))
    if not markers:
        return solution.strip(), ""
    last = markers[-1]
    reasoning = solution[: last.start()].strip()
    return reasoning, normalize_number(solution[last.end() :])


@dataclass(frozen=True)
class RecordedSolution:
    """One model's recorded solution to one question."""

    model: str
    solution: str
    reasoning: str
    answer: str  # normalised number, "" when the recorded solution never reached an answer
    is_correct: bool


@dataclass(frozen=True)
class RecordedQuestion:
    """A test question with the four recorded solutions (line `index` of both files)."""

    index: int
    question: str
    gold: str
    solutions: dict[str, RecordedSolution]

    def agreeing_models(self, answer: str, exclude: str | None = None) -> list[str]:
        """Recorded models (other than `exclude`) whose final answer equals `answer`."""
        if not answer:
            return []
        return [m for m, s in self.solutions.items() if m != exclude and s.answer == answer]

    def solution_with_answer(self, answer: str, prefer: str) -> RecordedSolution | None:
        """A recorded solution reaching `answer`, `prefer`'s own first, then in RECORDED_MODELS order."""
        own = self.solutions.get(prefer)
        if own is not None and answer and own.answer == answer:
            return own
        for model in RECORDED_MODELS:
            sol = self.solutions.get(model)
            if sol is not None and answer and sol.answer == answer:
                return sol
        return None


class ReplayBank:
    """All recorded questions, indexed for finding the question inside an arbitrary prompt."""

    def __init__(self, questions: list[RecordedQuestion]) -> None:
        self.questions = questions
        self._by_text: dict[str, RecordedQuestion] = {}
        self._by_prefix: dict[str, list[RecordedQuestion]] = {}
        for q in questions:
            key = normalize_text(q.question)
            self._by_text.setdefault(key, q)
            self._by_prefix.setdefault(key[:_KEY_CHARS], []).append(q)

    def __len__(self) -> int:
        return len(self.questions)

    @classmethod
    def load(cls, solutions_path: Path, questions_path: Path) -> ReplayBank:
        """Read model_solutions.jsonl and the matching questions file (line i <-> line i)."""
        solutions_lines = _read_jsonl(Path(solutions_path))
        question_lines = _read_jsonl(Path(questions_path))
        if len(solutions_lines) != len(question_lines):
            raise ValueError(
                f"{solutions_path} has {len(solutions_lines)} rows but {questions_path} has "
                f"{len(question_lines)}; they must be line-aligned"
            )
        questions: list[RecordedQuestion] = []
        for i, (row, qrow) in enumerate(zip(solutions_lines, question_lines, strict=True)):
            text = str(qrow["question"])
            recorded_text = row.get("question")
            if recorded_text is not None and normalize_text(str(recorded_text)) != normalize_text(text):
                raise ValueError(f"line {i + 1}: question text differs between the two files")
            sols: dict[str, RecordedSolution] = {}
            for model in RECORDED_MODELS:
                entry = row.get(model)
                if not isinstance(entry, dict) or "solution" not in entry:
                    continue
                solution = str(entry["solution"])
                reasoning, answer = split_final_answer(solution)
                sols[model] = RecordedSolution(
                    model, solution, reasoning, answer, bool(entry.get("is_correct"))
                )
            gold = normalize_number(str(qrow.get("answer", "")).rsplit("####", 1)[-1])
            questions.append(RecordedQuestion(i, text, gold, sols))
        logger.info("replay bank: %d questions from %s", len(questions), solutions_path)
        return cls(questions)

    def find(self, prompt: str) -> RecordedQuestion | None:
        """The recorded question whose text appears in `prompt`; the last one if several do.

        Few-shot demonstrations come before the test question in ReConcile prompts, so the last
        match is the question being asked. Fast path: text after each "Q:" marker; slow path: a
        substring scan over all questions (for prompts that do not use "Q:").
        """
        text = normalize_text(prompt)
        found: RecordedQuestion | None = None
        for marker in _Q_MARKER.finditer(text):
            tail = text[marker.end() :]
            for candidate in self._by_prefix.get(tail[:_KEY_CHARS], []):
                if tail.startswith(normalize_text(candidate.question)):
                    found = candidate
        if found is not None:
            return found
        best_pos = -1
        for key, candidate in self._by_text.items():
            pos = text.rfind(key)
            if pos > best_pos:
                best_pos, found = pos, candidate
        return found

    def question_end(self, prompt: str, question: RecordedQuestion) -> int:
        """Index in `prompt` just after the first occurrence of the question (0 if not found).

        Everything after it is where a debate block can be (a debate block that quotes the
        question again is still read whole). Matches the question's words with flexible whitespace.
        """
        words = [re.escape(w) for w in question.question.split()]
        match = re.search(r"\s+".join(words), prompt)
        return match.end() if match else 0


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object")
            rows.append(row)
    return rows
