"""Records that used to be merged, crash the parser or overflow the driver (issue 10, items 2 and 3).

Parsing only (no database): each must be a FormatError / DatasetError naming the file, the record
and the field; the store-level "nothing written" checks are in tests/reliability/test_integrity.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magdi.datasets import DatasetError, load_questions
from magdi.formats import FormatError, jsonl, magdi_ref
from magdi.mag import Agent, Debate, Question, Response, TaskType

DEEP = 100_000
MAX_DEPTH = 64  # magdi.formats.MAX_DEPTH, as the messages state it


def mag(job: str | None = "job-a", agents: tuple[str, ...] = ("a", "b"), qid: str = "0", **resp: object) -> Debate:
    q = Question(dataset="gsm8k", qid=qid, text="What is 9 + 9?", task=TaskType.NUMBER, gold_answer="18")
    responses = [Response(agent=a, round=0, answer="18", reasoning="9+9", confidence=0.9, **resp) for a in agents]
    return Debate(question=q, job_id=job, panel=[Agent(name=a, model=a) for a in agents], responses=responses)


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "mags.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


# -- item 2: duplicates ----------------------------------------------------------------------------------
def test_two_lines_of_one_debate_are_refused_naming_both(tmp_path: Path) -> None:
    """Same (job, dataset, question record), different panels: stored, they would merge into one."""
    first, second = mag(agents=("a", "b")), mag(agents=("a", "b", "c"))
    path = write_lines(tmp_path, jsonl.to_line(first), jsonl.to_line(mag(qid="1")), jsonl.to_line(second))
    with pytest.raises(FormatError) as caught:
        jsonl.load(path)
    message = str(caught.value)
    assert "line 3: the same debate as line 1" in message and "nothing imported" in message
    kept, errors = jsonl.load(path, skip_invalid=True)
    assert len(kept) == 2 and len(errors) == 1


def test_identical_job_less_lines_are_duplicates_but_different_content_is_not(tmp_path: Path) -> None:
    one, other = mag(job=None), mag(job=None, tokens_in=5)
    with pytest.raises(FormatError, match="line 2: the same debate as line 1"):
        jsonl.load(write_lines(tmp_path, jsonl.to_line(one), jsonl.to_line(one)))
    debates, _ = jsonl.load(write_lines(tmp_path, jsonl.to_line(one), jsonl.to_line(other)))
    assert len({d.id for d in debates}) == 2, "two imported debates on one question are both kept"


def test_identical_magdi_ref_records_are_refused_naming_both(tmp_path: Path) -> None:
    rec = {"question": "What is 9 + 9?", "gold_answer": "18",
           "a_output_0": {"reasoning": "r", "answer": "18", "confidence_level": 0.9}}
    other = {**rec, "a_output_0": {"reasoning": "r2", "answer": "17", "confidence_level": 0.9}}
    path = tmp_path / "ref.json"
    path.write_text(json.dumps([rec, other, rec]))
    with pytest.raises(FormatError, match=r"record 2: the same record as record 0"):
        magdi_ref.load(path, dataset="gsm8k")
    path.write_text(json.dumps([rec, other]))
    debates, _ = magdi_ref.load(path, dataset="gsm8k")
    assert len({d.id for d in debates}) == 2 and len({d.question.id for d in debates}) == 1


# -- item 3: deep JSON ---------------------------------------------------------------------------------
def test_a_100000_deep_value_in_a_jsonl_line_names_line_and_field(tmp_path: Path) -> None:
    body = json.loads(jsonl.to_line(mag()))
    line = json.dumps(body)[:-1] + ', "extra_field": ' + "[" * DEEP + "]" * DEEP + "}"
    with pytest.raises(FormatError, match=rf"line 1, field 'extra_field': JSON nested deeper than {MAX_DEPTH}"):
        jsonl.load(write_lines(tmp_path, line))


def test_a_deep_but_parseable_value_names_the_path(tmp_path: Path) -> None:
    body = json.loads(jsonl.to_line(mag()))
    nested: object = "x"
    for _ in range(200):
        nested = {"k": nested}
    body["question"]["extra"] = {"source": nested}
    with pytest.raises(FormatError, match=r"line 1, field 'question.extra.source.k\.\.\. \(\d+ levels\)'"):
        jsonl.load(write_lines(tmp_path, json.dumps(body)))


def test_a_100000_deep_magdi_ref_record_names_record_and_field(tmp_path: Path) -> None:
    ok = {"question": "q?", "gold_answer": "1", "a_output_0": {"answer": "1"}}
    path = tmp_path / "ref.json"
    path.write_text("[" + json.dumps(ok) + ', {"question": "q2?", "meta": ' + "[" * DEEP + "]" * DEEP + "}]")
    with pytest.raises(FormatError, match=r"record 1, field 'meta': JSON nested deeper than"):
        magdi_ref.load(path, dataset="gsm8k")


@pytest.mark.parametrize("layout", ["lines", "list"])
def test_a_100000_deep_dataset_record_is_a_dataset_error(tmp_path: Path, layout: str) -> None:
    good = {"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}
    deep = '{"question": "q", "answer": "#### 1", "notes": ' + "[" * DEEP + "]" * DEEP + "}"
    path = tmp_path / "data.jsonl"
    if layout == "lines":
        path.write_text(json.dumps(good) + "\n" + deep + "\n")
        where = r"line 2, field 'notes'"
    else:
        path.write_text("[" + json.dumps(good) + ", " + deep + "]")
        where = r"record 1, field 'notes'"
    with pytest.raises(DatasetError, match=where + ": JSON nested deeper than"):
        load_questions(path, "gsm8k")


# -- item 3: integers beyond int64 ---------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["tokens_in", "tokens_out", "attempts", "round"])
def test_an_integer_beyond_int64_names_line_and_field(tmp_path: Path, field: str) -> None:
    body = json.loads(jsonl.to_line(mag()))
    body["responses"][1][field] = 2**64
    with pytest.raises(FormatError) as caught:
        jsonl.load(write_lines(tmp_path, json.dumps(body)))
    assert f"line 1, field 'responses.1.{field}'" in str(caught.value)
    assert "less than or equal to 9223372036854775807" in str(caught.value)


def test_magdi_ref_round_and_confidence_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps([{"question": "q?", "gold_answer": "1",
                                 "a_output_18446744073709551616": {"answer": "1"}}]))
    with pytest.raises(FormatError, match=r"record 0, field 'a_output_18446744073709551616': round .* out of range"):
        magdi_ref.load(path, dataset="gsm8k")
    path.write_text(json.dumps([{"question": "q?", "gold_answer": "1",
                                 "a_output_0": {"answer": "1", "confidence_level": 10**400}}]))
    with pytest.raises(FormatError, match=r"record 0, field 'a_output_0'.confidence_level"):
        magdi_ref.load(path, dataset="gsm8k")
