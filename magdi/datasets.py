"""Benchmark loaders: every supported file format becomes a list of `magdi.mag.Question`.

Gold answers are stored in the canonical form of `magdi.answers` (GSM8K numbers with their sign,
"yes"/"no", option letters A-E for every choice dataset, the raw last `\\boxed{}` for MATH), so the
generator, importer and trainer compare against the same value. Question ids are the source id
when there is one, else the 0-based record index, so a given file always yields the same ids.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magdi.answers import last_boxed, normalize_answer, task_for_dataset
from magdi.errors import UserError
from magdi.formats import FormatError, loads_record, loads_records
from magdi.mag import Question, TaskType

logger = logging.getLogger(__name__)

FORMATS = ("gsm8k", "strategyqa", "ecqa", "aqua", "arc", "math", "jsonl")
FIELD_MAP_KEYS = ("question", "answer", "id", "options", "explanation")
_LETTERS = "ABCDEFGHIJ"
_TASK_OF_FORMAT = {"gsm8k": TaskType.NUMBER, "strategyqa": TaskType.YES_NO, "ecqa": TaskType.CHOICE,
                   "aqua": TaskType.CHOICE, "arc": TaskType.CHOICE, "math": TaskType.MATH}


class DatasetError(UserError):
    """A data file that cannot be loaded; the message names the file, the record and the field."""


Record = tuple[str, dict[str, Any]]  # (where: "line 12" / "record 3" / "file algebra/1.json", fields)


# -- public API ---------------------------------------------------------------------------------
def load_questions(path: str | Path, fmt: str, *, dataset: str | None = None, offset: int = 0,
                   limit: int | None = None, field_map: Mapping[str, str] | None = None) -> list[Question]:
    """Load questions [offset, offset+limit) of a data file.

    Args:
        path: the file (a directory of single-question JSON files for MATH).
        fmt: one of FORMATS, or "auto" to guess with `detect_format`.
        dataset: the dataset name stored on each question; defaults to the format name, and is
            required for the generic "jsonl" format, whose task comes from `task_for_dataset`.
        offset, limit: the slice of records; ids stay the full-file indices.
        field_map: for "jsonl", our names (question, answer, id, options, explanation) -> file keys.
    """
    path = Path(path)
    fmt = fmt.strip().lower()
    if fmt == "auto":
        fmt = detect_format(path) or ""
        if not fmt:
            raise DatasetError(f"{path}: cannot detect the format; pass one of {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if offset < 0 or (limit is not None and limit < 1):
        raise DatasetError(f"{path}: offset must be >= 0 and limit >= 1 (got {offset}, {limit})")
    if fmt == "jsonl" and not dataset:
        raise DatasetError(f"{path}: the generic 'jsonl' format needs a dataset name")
    name = dataset or fmt
    task = _TASK_OF_FORMAT.get(fmt) or task_for_dataset(name)
    if fmt == "jsonl":
        convert = _generic_converter(path, field_map or {})
    else:
        convert = _CONVERTERS[fmt]
    records = _read_csv(path) if fmt == "ecqa" else _read_json_records(path)
    questions = []
    for index, (where, rec) in enumerate(records):
        if index < offset:
            continue
        if limit is not None and len(questions) >= limit:
            break
        questions.append(convert(_Row(path, where, index, rec, name, task)))
    if not questions:
        raise DatasetError(f"{path}: no questions (offset {offset}, limit {limit})")
    logger.info("loaded %d %s questions from %s", len(questions), name, path)
    return questions


def default_format(dataset: str) -> str:
    """The dataset name when it is a known format (gsm8k, ecqa, ...), else detection ("auto")."""
    return dataset.lower() if dataset.lower() in FORMATS else "auto"


def detect_format(path: str | Path) -> str | None:
    """Guess the format from the first record's fields, else from the file name; None if unsure."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8", newline="") as fh:
                header = next(csv.reader(fh), [])
            return "ecqa" if {"q_text", "q_ans"} <= set(header) else None
        first = next(iter(_read_json_records(path)), None)
    except (OSError, DatasetError, StopIteration):
        first = None
    if first is not None:
        keys = set(first[1])
        if {"problem", "solution"} <= keys:
            return "math"
        if "answerKey" in keys:
            return "arc"
        if {"options", "correct"} <= keys:
            return "aqua"
        if "facts" in keys or isinstance(first[1].get("answer"), bool):
            return "strategyqa"
        if "####" in str(first[1].get("answer", "")):
            return "gsm8k"
    lowered = str(path).lower()
    for key, fmt in (("gsm8k", "gsm8k"), ("strategyqa", "strategyqa"), ("ecqa", "ecqa"), ("aqua", "aqua"),
                     ("arc", "arc"), ("math", "math")):
        if key in lowered:
            return fmt
    return None


# -- reading ------------------------------------------------------------------------------------
def _read_json_records(path: Path) -> Iterator[Record]:
    """Records of a JSON array, a single JSON object, JSON lines, or a directory of JSON files."""
    if path.is_dir():
        for file in sorted(path.rglob("*.json")):
            for _where, rec in _read_json_records(file):
                yield f"file {file.relative_to(path).as_posix()}", rec
        return
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = loads_records(text, str(path))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        except FormatError as exc:
            raise DatasetError(str(exc)) from None
        for i, rec in enumerate(data):
            yield f"record {i + 1}", _as_object(path, f"record {i + 1}", rec)
        return
    if stripped.startswith("{") and "\n" in stripped.strip():
        try:  # a pretty-printed single object (one MATH problem per file)
            yield "record 1", _as_object(path, "record 1", loads_record(text, f"{path}: record 1"))
            return
        except json.JSONDecodeError:
            pass  # JSON lines
        except FormatError as exc:
            raise DatasetError(str(exc)) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = loads_record(line, f"{path}: line {lineno}")
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        except FormatError as exc:
            raise DatasetError(str(exc)) from None
        yield f"line {lineno}", _as_object(path, f"line {lineno}", rec)


def _as_object(path: Path, where: str, rec: object) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise DatasetError(f"{path}: {where}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _read_csv(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            yield f"line {reader.line_num}", {k: v for k, v in row.items() if k}


@dataclass(frozen=True)
class _Row:
    """One source record plus where it came from, for converters and their error messages."""

    path: Path
    where: str
    index: int
    rec: dict[str, Any]
    dataset: str
    task: TaskType

    def error(self, field: str, problem: str) -> DatasetError:
        return DatasetError(f"{self.path}: {self.where}: field {field!r}: {problem}")

    def get(self, field: str, *, required: bool = True) -> Any:
        value = self.rec.get(field)
        if required and (value is None or (isinstance(value, str) and not value.strip())):
            raise self.error(field, "missing or empty")
        return value

    def qid(self, *fields: str) -> str:
        """The first present id field, else the file's path in a directory, else the record index."""
        for field in fields:
            if self.rec.get(field) not in (None, ""):
                return str(self.rec[field])
        if self.where.startswith("file "):
            return self.where.removeprefix("file ").removesuffix(".json")
        return str(self.index)

    def extra(self, *consumed: str) -> dict[str, Any]:
        return {k: v for k, v in self.rec.items() if k not in consumed}

    def question(self, text: Any, gold: str | None, *, qid: str, options: list[str] | None = None,
                 explanation: str | None = None, extra: dict[str, Any] | None = None) -> Question:
        return Question(dataset=self.dataset, qid=qid, text=str(text).strip(), task=self.task,
                        gold_answer=gold, options=options or [], gold_explanation=explanation or None,
                        extra=extra or {})


# -- formats ------------------------------------------------------------------------------------
def gsm8k_gold(answer: object) -> str | None:
    """The number after the last '#### ' (or a final 'A: '), commas removed and the sign KEPT."""
    text = str(answer)
    marker = re.search(r"(?:####|(?:^|\n)A:)(?!.*(?:####|\nA:))(.*)$", text, re.DOTALL)
    if marker:
        return normalize_answer(marker.group(1), TaskType.NUMBER)
    if isinstance(answer, int | float) or re.fullmatch(r"\s*[-+$]?[\d,]*\.?\d+\s*", text):
        return normalize_answer(answer, TaskType.NUMBER)
    return None


def _gsm8k(row: _Row) -> Question:
    answer = row.get("answer")
    gold = gsm8k_gold(answer)
    if gold is None:
        raise row.error("answer", "no '#### <number>' marker with a number")
    explanation = re.split(r"\n?(?:####|(?:^|\n)A:)", str(answer))[0]
    explanation = re.sub(r"<<[^<>]*>>", "", explanation).strip()
    return row.question(row.get("question"), gold, qid=row.qid("id", "qid"), explanation=explanation,
                        extra=row.extra("id", "qid", "question", "answer"))


def _strategyqa(row: _Row) -> Question:
    answer = row.get("answer")
    gold = normalize_answer(answer, TaskType.YES_NO)
    if gold is None:
        raise row.error("answer", f"expected a boolean or yes/no, got {answer!r}")
    facts = row.get("facts", required=False)
    explanation = " ".join(str(f) for f in facts) if isinstance(facts, list) else facts
    return row.question(row.get("question"), gold, qid=row.qid("qid", "id"), explanation=explanation,
                        extra=row.extra("qid", "id", "question", "answer", "facts"))


def _choice_gold(row: _Row, field: str, options: list[str]) -> str:
    value = row.get(field)
    gold = normalize_answer(value, TaskType.CHOICE, options)
    if gold is None:
        raise row.error(field, f"{value!r} is not one of the {len(options)} options")
    return gold


def _ecqa(row: _Row) -> Question:
    options = [str(row.get(f"q_op{i}")).strip() for i in range(1, 6)]
    return row.question(row.get("q_text"), _choice_gold(row, "q_ans", options), qid=row.qid("q_no", "id"),
                        options=options, explanation=row.get("taskB", required=False),
                        extra={k: v for k, v in row.extra("q_no", "id", "q_text", "q_ans", "taskB").items()
                               if not k.startswith("q_op")})


def _aqua(row: _Row) -> Question:
    raw = row.get("options")
    if not isinstance(raw, list) or not raw:
        raise row.error("options", "expected a non-empty list like ['A)21', 'B)22']")
    options = [re.sub(r"^\s*\(?[A-J]\s*\)\s*", "", str(o)).strip() for o in raw]
    return row.question(row.get("question"), _choice_gold(row, "correct", options), qid=row.qid("id", "qid"),
                        options=options, explanation=row.get("rationale", required=False),
                        extra=row.extra("id", "qid", "question", "options", "correct", "rationale"))


def _arc(row: _Row) -> Question:
    question = row.get("question")
    if isinstance(question, dict):  # public ARC: {"stem", "choices": [{"text", "label"}]}
        stem = question.get("stem")
        if not stem:
            raise row.error("question.stem", "missing or empty")
        choices = question.get("choices") or []
        labels = [str(c.get("label", "")) for c in choices if isinstance(c, dict)]
        texts = [str(c.get("text", "")) for c in choices if isinstance(c, dict)]
    else:  # Hugging Face: question str, choices {"text": [...], "label": [...]}
        stem, choices = question, row.get("choices")
        labels = [str(x) for x in (choices.get("label") or [])] if isinstance(choices, dict) else []
        texts = [str(x) for x in (choices.get("text") or [])] if isinstance(choices, dict) else []
    if not texts or len(texts) != len(labels) or len(texts) > len(_LETTERS):
        raise row.error("choices", "expected up to 10 choices, each with a text and a label")
    key = str(row.get("answerKey")).strip()
    if key not in labels:  # labels may be "1".."4": the gold is the position, as a letter
        raise row.error("answerKey", f"{key!r} is not one of the labels {labels}")
    return row.question(stem, _LETTERS[labels.index(key)], qid=row.qid("id"), options=texts,
                        extra={"labels": labels} if labels != list(_LETTERS[: len(labels)]) else {})


def _math(row: _Row) -> Question:
    solution = row.get("solution", required=False)
    gold = last_boxed(str(solution)) if solution else None
    if gold is None:
        gold = row.get("answer", required=False)
    if gold is None or not str(gold).strip():
        raise row.error("solution", "no \\boxed{...} answer (and no 'answer' field)")
    return row.question(row.get("problem"), str(gold).strip(), qid=row.qid("id", "unique_id"),
                        explanation=solution,
                        extra=row.extra("id", "unique_id", "problem", "solution", "answer"))


def _generic_converter(path: Path, field_map: Mapping[str, str]) -> Callable[[_Row], Question]:
    unknown = sorted(set(field_map) - set(FIELD_MAP_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown field_map keys {unknown}; allowed: {', '.join(FIELD_MAP_KEYS)}")
    keys = {name: field_map.get(name, name) for name in FIELD_MAP_KEYS}

    def convert(row: _Row) -> Question:
        options = row.get(keys["options"], required=False) or []
        if not isinstance(options, list):
            raise row.error(keys["options"], "expected a list of option texts")
        options = [str(o) for o in options]
        raw = row.get(keys["answer"])
        gold = normalize_answer(raw, row.task, options)
        if gold is None:
            raise row.error(keys["answer"], f"{raw!r} is not a valid {row.task.value} answer")
        return row.question(row.get(keys["question"]), gold, qid=row.qid(keys["id"]), options=options,
                            explanation=row.get(keys["explanation"], required=False),
                            extra=row.extra(*keys.values()))

    return convert


_CONVERTERS: dict[str, Callable[[_Row], Question]] = {
    "gsm8k": _gsm8k, "strategyqa": _strategyqa, "ecqa": _ecqa, "aqua": _aqua, "arc": _arc, "math": _math,
}
