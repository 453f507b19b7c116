"""Dataset loaders: the public files shipped under data/ and tiny files in each public format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_data import data_file

from magdi.answers import is_equivalent
from magdi.datasets import FORMATS, DatasetError, detect_format, gsm8k_gold, load_questions
from magdi.mag import TaskType


def public(rel: str) -> Path:
    return data_file(*rel.split("/"))


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the public files under data/ --------------------------------------------------------------------
def test_gsm8k_test_file() -> None:
    qs = load_questions(public("gsm8k/test.jsonl"), "gsm8k", limit=3)
    assert [q.qid for q in qs] == ["0", "1", "2"]
    q = qs[0]
    assert (q.dataset, q.task, q.gold_answer) == ("gsm8k", TaskType.NUMBER, "18")
    assert q.text.startswith("Janet")
    assert "<<" not in (q.gold_explanation or "") and "####" not in (q.gold_explanation or "")
    assert q.gold_explanation.endswith("market.")


def test_gsm8k_keeps_negative_golds() -> None:
    golds = [q.gold_answer for q in load_questions(public("gsm8k/test.jsonl"), "gsm8k")]
    assert len(golds) == 1319
    assert {"-10", "-3"} <= set(golds)  # the reference deleted the sign
    assert all("," not in g for g in golds)


def test_gsm8k_offset_keeps_file_indices_as_ids() -> None:
    qs = load_questions(public("gsm8k/train-first500.jsonl"), "gsm8k", dataset="gsm8k-train", offset=10, limit=2)
    assert [q.qid for q in qs] == ["10", "11"]
    assert qs[0].dataset == "gsm8k-train" and qs[0].task is TaskType.NUMBER


def test_strategyqa_dev() -> None:
    qs = load_questions(public("strategyqa/dev.json"), "strategyqa", limit=5)
    q = qs[0]
    assert q.qid == "e0044a7b4d146d611e73"
    assert (q.task, q.gold_answer) == (TaskType.YES_NO, "no")
    assert q.gold_explanation == "Albany, GA has around 75,000 people Albany, NY has almost 100,000 people"
    assert {q.gold_answer for q in qs} <= {"yes", "no"}
    assert "decomposition" in q.extra


def test_ecqa_gold_is_the_letter_of_the_answer_text() -> None:
    qs = load_questions(public("ecqa/test-first300.csv"), "ecqa")
    assert len(qs) == 300
    q = qs[0]
    assert q.qid == "26f7c29d5acb341f79610f7c040412a4"
    assert q.options == ["greedy", "worry", "have knowledge", "take charge", "boss"]
    assert (q.task, q.gold_answer) == (TaskType.CHOICE, "C")
    assert q.gold_explanation and q.gold_explanation.startswith("Have knowledge")
    assert q.extra["q_concept"] == "in charge of project"
    assert {q.gold_answer for q in qs} == set("ABCDE")
    assert is_equivalent("3", q.gold_answer, TaskType.CHOICE, q.options)  # ReConcile's 1-5 labels


def test_aqua_options_lose_their_labels() -> None:
    q = load_questions(public("aqua/test.json"), "aqua", limit=1)[0]
    assert q.options[0] == "5(√3 + 1)" and len(q.options) == 5
    assert (q.task, q.gold_answer, q.qid) == (TaskType.CHOICE, "A", "0")
    assert q.gold_explanation and "Answer : A" in q.gold_explanation


@pytest.mark.parametrize(
    ("rel", "fmt"),
    [("gsm8k/test.jsonl", "gsm8k"), ("strategyqa/dev.json", "strategyqa"), ("ecqa/test-first300.csv", "ecqa"),
     ("aqua/test.json", "aqua")],
)
def test_detect_format_on_shared_files(rel: str, fmt: str) -> None:
    assert detect_format(public(rel)) == fmt
    assert load_questions(public(rel), "auto", limit=1)[0].dataset == fmt


# -- public formats written here ---------------------------------------------------------------
ARC_NESTED = {"id": "Mercury_7175875", "answerKey": "C", "question": {
    "stem": "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect?",
    "choices": [{"text": "Planetary density will decrease.", "label": "A"},
                {"text": "Planetary years will become longer.", "label": "B"},
                {"text": "Planetary days will become shorter.", "label": "C"},
                {"text": "Planetary gravity will become stronger.", "label": "D"}]}}
ARC_FLAT_NUMERIC = {"id": "NYSEDREGENTS_2015_4_8", "question": "Which form of energy is produced when a rubber band vibrates?",
                    "choices": {"text": ["chemical", "light", "electrical", "sound"], "label": ["1", "2", "3", "4"]},
                    "answerKey": "4"}


def test_arc_nested_and_flat_formats(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "arc.jsonl", [ARC_NESTED, ARC_FLAT_NUMERIC])
    nested, flat = load_questions(path, "arc", dataset="arc-challenge")
    assert (nested.qid, nested.gold_answer, nested.task) == ("Mercury_7175875", "C", TaskType.CHOICE)
    assert nested.options[2] == "Planetary days will become shorter."
    assert nested.text.startswith("An astronomer")
    assert (flat.gold_answer, flat.options[-1]) == ("D", "sound")  # label "4" -> letter D
    assert flat.extra == {"labels": ["1", "2", "3", "4"]}
    assert detect_format(path) == "arc"


def test_arc_json_list(tmp_path: Path) -> None:
    path = tmp_path / "arc.json"
    path.write_text(json.dumps([ARC_FLAT_NUMERIC]), encoding="utf-8")
    assert load_questions(path, "arc")[0].gold_answer == "D"


def test_arc_bad_answer_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "arc.jsonl", [{**ARC_NESTED, "answerKey": "E"}])
    with pytest.raises(DatasetError, match=r"line 1: field 'answerKey'"):
        load_questions(path, "arc")


MATH_PROBLEM = {"problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
                "solution": "We have $\\frac{1}{4}+\\frac{1}{4} = \\boxed{\\frac{1}{2}}$."}


def test_math_directory_of_files(tmp_path: Path) -> None:
    (tmp_path / "prealgebra").mkdir()
    (tmp_path / "prealgebra" / "1.json").write_text(json.dumps(MATH_PROBLEM, indent=4), encoding="utf-8")
    nested = {**MATH_PROBLEM, "solution": "So $x = \\boxed{\\sqrt{\\frac{a}{b}}}$ and not \\boxed{2} ... \\boxed{{3}}"}
    (tmp_path / "prealgebra" / "2.json").write_text(json.dumps(nested, indent=4), encoding="utf-8")
    one, two = load_questions(tmp_path, "math")
    assert (one.qid, one.gold_answer, one.task) == ("prealgebra/1", "\\frac{1}{2}", TaskType.MATH)
    assert one.extra == {"level": "Level 1", "type": "Prealgebra"}
    assert one.gold_explanation == MATH_PROBLEM["solution"]
    assert two.gold_answer == "{3}"  # the last \boxed, nested braces kept
    assert is_equivalent("0.5", one.gold_answer, TaskType.MATH)


def test_math_jsonl_with_ids_and_answer_fallback(tmp_path: Path) -> None:
    rows = [{**MATH_PROBLEM, "unique_id": "test/prealgebra/1.json"},
            {"problem": "2+2?", "solution": "It is four.", "answer": "4"}]
    qs = load_questions(write_jsonl(tmp_path / "math.jsonl", rows), "math")
    assert [q.qid for q in qs] == ["test/prealgebra/1.json", "1"]
    assert qs[1].gold_answer == "4"


def test_math_without_any_answer(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "math.jsonl", [{"problem": "p", "solution": "no box"}])
    with pytest.raises(DatasetError, match=r"line 1: field 'solution'"):
        load_questions(path, "math")


def test_generic_jsonl_with_field_map(tmp_path: Path) -> None:
    rows = [{"q": "Is water wet?", "label": "Yes.", "key": "w1", "why": "it is"}, {"q": "Is fire cold?", "label": False}]
    path = write_jsonl(tmp_path / "custom.jsonl", rows)
    qs = load_questions(path, "jsonl", dataset="strategyqa-custom",
                        field_map={"question": "q", "answer": "label", "id": "key", "explanation": "why"})
    assert [(q.qid, q.gold_answer, q.task) for q in qs] == [("w1", "yes", TaskType.YES_NO), ("1", "no", TaskType.YES_NO)]
    assert qs[0].gold_explanation == "it is" and qs[0].extra == {}


def test_generic_jsonl_choice_options(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "Colour?", "answer": "pink", "options": ["red", "pink"]}])
    q = load_questions(path, "jsonl", dataset="csqa")[0]
    assert (q.gold_answer, q.options) == ("B", ["red", "pink"])


def test_gsm8k_gold_rule() -> None:
    assert gsm8k_gold("a <<1+1=2>>2\n#### 1,234") == "1234"
    assert gsm8k_gold("x\n#### -3") == "-3"
    assert gsm8k_gold("ducks\nA: 18") == "18"
    assert gsm8k_gold(42) == "42"
    assert gsm8k_gold("no marker") is None


def test_gsm8k_prefers_an_id_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [{"id": "abc", "question": "q?", "answer": "so\n#### 7"}])
    q = load_questions(path, "gsm8k")[0]
    assert (q.qid, q.gold_answer, q.gold_explanation) == ("abc", "7", "so")


# -- errors -----------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_questions(tmp_path / "nope.jsonl", "gsm8k")


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="known formats: " + ", ".join(FORMATS)):
        load_questions(tmp_path, "parquet")


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n\n{"question": "q2", "answer": \n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"g\.jsonl: line 3: invalid JSON"):
        load_questions(path, "gsm8k")


def test_bad_json_array_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text('[\n{"question": "q", "answer": true},\n{"question": \n]', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"dev\.json: invalid JSON at line 4"):
        load_questions(path, "strategyqa")


def test_missing_field_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "#### 1"}, {"question": "q2"}])
    with pytest.raises(DatasetError, match=r"g\.jsonl: line 2: field 'answer': missing"):
        load_questions(path, "gsm8k")


def test_bad_gold_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [{"question": "q", "answer": "perhaps"}])
    with pytest.raises(DatasetError, match=r"line 1: field 'answer': expected a boolean or yes/no"):
        load_questions(path, "strategyqa")


def test_ecqa_answer_not_among_options(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("q_text,q_op1,q_op2,q_op3,q_op4,q_op5,q_ans,taskB\nQ?,a1,a2,a3,a4,a5,zzz,why\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"e\.csv: line 2: field 'q_ans'"):
        load_questions(path, "ecqa")


def test_record_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    path.write_text('[1, 2]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="record 1: expected a JSON object"):
        load_questions(path, "gsm8k")


def test_empty_result(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(DatasetError, match="no questions"):
        load_questions(path, "gsm8k", offset=5)
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="no questions"):
        load_questions(tmp_path / "empty.jsonl", "gsm8k")


def test_generic_jsonl_needs_a_dataset_and_known_field_map(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DatasetError, match="needs a dataset name"):
        load_questions(path, "jsonl")
    with pytest.raises(DatasetError, match="unknown field_map keys"):
        load_questions(path, "jsonl", dataset="x", field_map={"prompt": "question"})


def test_bad_slice(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(DatasetError, match="offset must be"):
        load_questions(path, "gsm8k", offset=-1)
    with pytest.raises(DatasetError, match="limit"):
        load_questions(path, "gsm8k", limit=0)
