"""The MAGDi reference format: a JSON list, one object per question.

Each object has `question`, `gold_answer` and `<agent>_output_<round>` objects holding `reasoning`,
`answer` and `confidence_level`. Any agent names and any number of rounds are accepted. Within the
rounds a record has, a missing `<agent>_output_<round>` (or a null/empty one) is an absent node;
rounds after the last one present (discussion ended) are simply not there.

Import keeps every source field (the output objects verbatim as the responses' `raw_text`, other
top-level keys in `Question.extra`), so export gives back the same objects, up to key order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from magdi import answers, ids
from magdi.formats import FormatError, loads_records
from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from magdi.mag import ParseStatus as PS

OUTPUT_KEY = re.compile(r"^(?P<agent>[A-Za-z0-9][A-Za-z0-9_.\-]*?)_output_(?P<round>\d+)$")
PROTOCOL = "imported:magdi-ref"
MAX_ROUND = 1000  # `<agent>_output_<round>` beyond this is a broken key, not a debate (rounds run 0..N)


def _where(path: str, index: int, field: str | None = None) -> str:
    return f"{path}: record {index}" + (f", field {field!r}" if field else "")


def read_records(path: Path) -> list[Any]:
    try:
        data = loads_records(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise FormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _panel(records: Iterable[Any]) -> list[str]:
    """Agent names in first-seen order across the file: every debate gets the same seats."""
    names: dict[str, None] = {}
    for rec in records:
        if isinstance(rec, dict):
            for key in rec:
                m = OUTPUT_KEY.match(key)
                if m:
                    names.setdefault(m["agent"], None)
    return list(names)


def record_to_debate(rec: Any, index: int, *, path: str, dataset: str, task: TaskType, agents: list[str]) -> Debate:
    """One reference record to a MAG; raises FormatError naming the record and field."""
    if not isinstance(rec, dict):
        raise FormatError(f"{_where(path, index)}: expected an object, got {type(rec).__name__}")
    text = rec.get("question")
    if not isinstance(text, str) or not text.strip():
        raise FormatError(f"{_where(path, index, 'question')}: missing or not a non-empty string")
    gold = rec.get("gold_answer")
    options = rec.get("options") if isinstance(rec.get("options"), list) else []
    outputs: dict[tuple[str, int], Any] = {}
    extra: dict[str, Any] = {}
    for key, value in rec.items():
        m = OUTPUT_KEY.match(key)
        if m:
            if int(m["round"]) > MAX_ROUND:
                raise FormatError(f"{_where(path, index, key)}: round {m['round']} is out of range (at most "
                                  f"{MAX_ROUND})")
            outputs[(m["agent"], int(m["round"]))] = value
        elif key != "question":
            extra[key] = value
    qid = str(rec.get("id") or rec.get("qid") or ids.text_qid(text))
    question = Question(
        dataset=dataset,
        qid=qid,
        text=text,
        task=task,
        gold_answer=None if gold is None else str(gold),
        options=[str(o) for o in options],
        extra=extra,
    )
    last_round = max((r for (_, r), v in outputs.items() if v), default=-1)
    responses = []
    for agent in agents:
        for rnd in range(last_round + 1):
            value = outputs.get((agent, rnd))
            field = f"{agent}_output_{rnd}"
            if not value:
                raw = None if (agent, rnd) not in outputs else json.dumps(value)
                responses.append(Response(agent=agent, round=rnd, parse_status=PS.ABSENT, raw_text=raw))
                continue
            responses.append(_response(value, agent, rnd, question, where=_where(path, index, field)))
    panel = [Agent(name=a, model=a) for a in agents]
    final = [r for r in responses if r.round == last_round and r.parse_status is PS.VALID]
    norm = [answers.normalize_answer(r.answer, task, question.options) for r in final]
    team = answers.weighted_vote(norm, [r.confidence for r in final])
    majority = answers.majority_vote(norm)
    return Debate(
        question=question,
        protocol=PROTOCOL,
        panel=panel,
        responses=responses,
        edges=full_visibility_edges(responses),
        team_answer=team,
        team_correct=None if team is None or gold is None else answers.is_equivalent(team, gold, task, options),
        majority_answer=majority,
        consensus=len(set(norm)) == 1 if norm else None,
        rounds_used=last_round + 1,
    )


def _response(value: Any, agent: str, rnd: int, q: Question, *, where: str) -> Response:
    if not isinstance(value, dict):
        raise FormatError(f"{where}: expected an object with reasoning/answer, got {type(value).__name__}")
    conf_raw = value.get("confidence_level")
    confidence = None
    if conf_raw not in (None, ""):
        confidence = answers.parse_confidence(conf_raw)
        if confidence is None:
            raise FormatError(f"{where}.confidence_level: {conf_raw!r} is not a number in [0, 1] or a percentage")
    reasoning = value.get("reasoning")
    if isinstance(reasoning, list):
        reasoning = " ".join(map(str, reasoning))
    answer = value.get("answer")
    status = PS.VALID if answer not in (None, "") else PS.INVALID
    correct = (
        answers.is_equivalent(answer, q.gold_answer, q.task, q.options)
        if status is PS.VALID and q.gold_answer is not None
        else None
    )
    return Response(
        agent=agent,
        round=rnd,
        parse_status=status,
        reasoning=None if reasoning is None else str(reasoning),
        answer=None if answer in (None, "") else str(answer),
        confidence=confidence,
        recalibrated_confidence=None if confidence is None else answers.recalibrate_confidence(confidence),
        correct=correct,
        raw_text=json.dumps(value, ensure_ascii=False),
        parse_error=None if status is PS.VALID else "no answer field",
        model=agent,
    )


def load(
    path: Path, *, dataset: str, task: TaskType | None = None, skip_invalid: bool = False
) -> tuple[list[Debate], list[str]]:
    """Parse the whole file first; with errors and not `skip_invalid`, raise and store nothing."""
    records = read_records(path)
    task = task or answers.task_for_dataset(dataset)
    agents = _panel(records)
    if not agents:
        raise FormatError(f"{path}: no `<agent>_output_<round>` fields in any record")
    debates, errors = [], []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        try:
            debate = record_to_debate(rec, i, path=str(path), dataset=dataset, task=task, agents=agents)
        except FormatError as exc:
            errors.append(str(exc))
            continue
        except ValueError as exc:  # pydantic validation: name the record
            errors.append(f"{_where(str(path), i)}: {exc}")
            continue
        first = seen.setdefault(debate.id, i)
        if first != i:
            errors.append(f"{_where(str(path), i)}: the same record as record {first} (question "
                          f"{debate.question.qid!r}, identical outputs); stored once, the two would be one debate")
            continue
        debates.append(debate)
    if errors and not skip_invalid:
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise FormatError(f"{len(errors)} invalid record(s), nothing imported:\n  {shown}{more}")
    return debates, errors


def debate_to_record(d: Debate) -> dict[str, Any]:
    """Back to a reference object; verbatim source fields where the MAG came from an import."""
    q = d.question
    rec: dict[str, Any] = {"question": q.text}
    if "gold_answer" in q.extra or q.extra:
        rec.update(q.extra)
    else:
        rec["gold_answer"] = q.gold_answer
    rec.setdefault("gold_answer", q.gold_answer)
    for r in d.sorted_responses():
        key = f"{r.agent}_output_{r.round}"
        source = _verbatim(r.raw_text)
        if r.parse_status is PS.ABSENT:
            if r.raw_text is not None:
                rec[key] = json.loads(r.raw_text)
            continue
        if source is not None and d.protocol == PROTOCOL:
            rec[key] = source
        else:
            rec[key] = {"reasoning": r.reasoning, "answer": r.answer, "confidence_level": r.confidence}
    return rec


def _verbatim(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def dump(debates: Iterable[Debate], out: Path) -> int:
    """Write a JSON list, streaming one record at a time so memory stays flat."""
    n = 0
    with out.open("w", encoding="utf-8") as fh:
        fh.write("[")
        for d in debates:
            fh.write(",\n" if n else "\n")
            fh.write(json.dumps(debate_to_record(d), ensure_ascii=False))
            n += 1
        fh.write("\n]\n")
    return n


def iter_records(debates: Iterable[Debate]) -> Iterator[dict[str, Any]]:
    return (debate_to_record(d) for d in debates)
