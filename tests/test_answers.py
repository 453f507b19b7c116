"""Answer normalisation, equivalence and extraction, including every reference pitfall of docs/method.md §6.3."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repo_data import data_file

from magdi.answers import (
    AnswerParseError,
    extract_answer,
    is_equivalent,
    latex,
    latex_to_sympy_syntax,
    majority_vote,
    normalize_answer,
    normalize_math,
    parse_confidence,
    parse_json_output,
    recalibrate_confidence,
    remove_agreement,
    symbolic_equal,
    task_for_dataset,
    weighted_vote,
)
from magdi.mag import TaskType

NUMBER, YES_NO, CHOICE, MATH, TEXT = (TaskType.NUMBER, TaskType.YES_NO, TaskType.CHOICE, TaskType.MATH,
                                      TaskType.TEXT)
ECQA_OPTIONS = ["fragrant", "table", "red", "pink", "flower"]


# -- normalize_answer ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,234", "1234"),  # REF split on the comma and returned 234
        ("$18.00", "18"),
        ("-3", "-3"),  # REF dropped the sign
        ("\u22123", "-3"),  # unicode minus
        ("18.0", "18"),
        ("0.50", "0.5"),
        ("5 apples", "5"),
        ("1/2", "0.5"),
        ("5.", "5"),
        (".5", "0.5"),
        ("2 * 9 = 18", "18"),  # after the last '='
        ("$\\boxed{18}$", "18"),
        ("\\frac{3}{4}", "0.75"),
        ("50%", "50"),
        (18, "18"),
        (18.0, "18"),
        (-2.5, "-2.5"),
        ("abc", None),
        ("", None),
        (None, None),
        (True, None),
        ("1e400", None),
    ],
)
def test_normalize_number(raw: object, expected: str | None) -> None:
    assert normalize_answer(raw, NUMBER) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("yes", "yes"), ("Yes.", "yes"), ("NO", "no"), ("no!", "no"), ("True", "yes"), ("false", "no"),
     (True, "yes"), (False, "no"), ("Yes, because of the facts", "yes"), ('"no"', "no"),
     ("know", None), ("not", None), ("eyes", None), ("No idea", None), ("maybe", None), (1, None)],
)
def test_normalize_yes_no(raw: object, expected: str | None) -> None:
    assert normalize_answer(raw, YES_NO) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("A", "A"), ("a", "A"), ("(B)", "B"), ("B)", "B"), ("C.", "C"), ("Option C", "C"), ("answer: e", "E"),
     ("4", "D"),  # ECQA gold labels are 1-based digits in ReConcile
     ("(4)", "D"), ("pink", "D"), ("Pink.", "D"), ("  pink  ", "D"), ("D) pink", "D"), ("4. pink", "D"),
     ("25", None),  # REF read the 5 inside 25
     ("6", None), ("F", None), ("purple", None), ("answers", None), ("4. red", None)],
)
def test_normalize_choice_with_options(raw: object, expected: str | None) -> None:
    assert normalize_answer(raw, CHOICE, ECQA_OPTIONS) == expected


def test_normalize_choice_without_options() -> None:
    assert normalize_answer("B", CHOICE) == "B"
    assert normalize_answer("3", CHOICE) == "C"
    assert normalize_answer("9", CHOICE) == "I"
    assert normalize_answer("(C) anything", CHOICE) == "C"
    assert normalize_answer("25", CHOICE) is None
    assert normalize_answer("pink", CHOICE) is None
    assert normalize_answer(True, CHOICE) is None


def test_choice_prefers_option_text_over_index_for_numeric_options() -> None:
    # AQuA-like options are numbers: "21" is the option's text, not an index.
    options = ["21", "22", "23", "24", "25"]
    assert normalize_answer("21", CHOICE, options) == "A"
    assert normalize_answer("2", CHOICE, options) == "B"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"), ("0.5", "\\frac{1}{2}"), ("\\dfrac12", "\\frac{1}{2}"),
     ("x = 5", "5"), ("10\\text{ cm}", "10"), ("5.", "5"), ("\\sqrt3", "\\sqrt{3}"),
     ("\\left( 1, 2 \\right)", "(1,2)"), ("90^\\circ", "90"), ("1/3", "\\frac{1}{3}"),
     ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}"), ("\\text{(B)}", "(B)"), ("1,\\!000", "1000")],
)
def test_normalize_math(raw: str, expected: str) -> None:
    assert normalize_math(raw) == expected


def test_normalize_text() -> None:
    assert normalize_answer("  The  Eiffel\nTower. ", TEXT) == "the eiffel tower"
    assert normalize_answer("   ", TEXT) is None


# -- is_equivalent ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pred", "gold", "task", "expected"),
    [
        ("18.0", "18", NUMBER, True),  # D9: raw == labelled these incorrect
        (18.0, "18", NUMBER, True),
        ("1,234", "1234", NUMBER, True),
        ("-3", "3", NUMBER, False),
        ("0.3333333", "1/3", NUMBER, True),  # relative tolerance 1e-6
        ("0.333", "1/3", NUMBER, False),
        ("Yes.", "yes", YES_NO, True),
        ("no", "yes", YES_NO, False),
        ("5.", "5", MATH, True),
        ("$\\boxed{\\frac{1}{2}}$", "0.5", MATH, True),
        ("\\frac{2}{4}", "\\frac{1}{2}", MATH, True),  # symbolic rule
        ("2\\sqrt{2}", "\\sqrt{8}", MATH, True),
        ("\\frac{\\pi}{2}", "\\pi/2", MATH, True),
        ("x^2+2x+1", "(x+1)^2", MATH, True),
        ("(1,2)", "(1, 2)", MATH, True),
        ("\\frac{1}{3}", "0.5", MATH, False),
        ("The Eiffel Tower", "the eiffel tower.", TEXT, True),
    ],
)
def test_is_equivalent(pred: object, gold: object, task: TaskType, expected: bool) -> None:
    assert is_equivalent(pred, gold, task) is expected


def test_is_equivalent_choice_maps_digits_text_and_letters() -> None:
    assert is_equivalent("4", "D", CHOICE, ECQA_OPTIONS)
    assert is_equivalent("pink", "4", CHOICE, ECQA_OPTIONS)
    assert not is_equivalent("A", "D", CHOICE, ECQA_OPTIONS)
    # ECQA repeats option texts (e.g. 'studio' at B and E): either position is the same answer.
    assert is_equivalent("E", "B", CHOICE, ["house", "studio", "large house", "mansion", "studio"])


@pytest.mark.parametrize("task", list(TaskType))
def test_none_is_never_equivalent(task: TaskType) -> None:
    assert not is_equivalent(None, None, task)
    assert not is_equivalent(None, "5", task)
    assert not is_equivalent("5", None, task)


def test_symbolic_check_is_sandboxed() -> None:
    for hostile in ("__import__('os')", "().__class__", "\\frac{1}{2}+open", "9^9^9^9^9", "10^{100000}"):
        with pytest.raises(ValueError):
            latex_to_sympy_syntax(hostile)
        assert not symbolic_equal(hostile, "1")


def test_symbolic_timeout_means_not_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert symbolic_equal("\\frac{1}{2}", "0.5", timeout_s=5.0)

    def slow(a: str, b: str) -> bool:
        time.sleep(0.5)
        return True

    monkeypatch.setattr(latex, "_sympy_equal", slow)
    assert not symbolic_equal("\\frac{1}{2}", "0.5", timeout_s=0.05)


# -- extract_answer (D19) -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "task", "expected"),
    [
        ("9 * 2 = 18 dollars. So the answer is 18.</s>", NUMBER, "18"),
        ("He owes 25. So the answer is -1,234</s></s>", NUMBER, "-1234"),
        ("The answer is: $42", NUMBER, "42"),
        ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18", NUMBER, "18"),  # no marker: last number
        ("She makes 9 * 2 = $<<9*2=18>>18\nA: 18", NUMBER, "18"),  # model_solutions.jsonl style
        ("Janet sells 9 eggs.\n#### 18", NUMBER, "18"),
        ("So the answer is 18<|endoftext|>", NUMBER, "18"),
        ("So the answer is 18.\n\n### Question: 25 apples", NUMBER, "18"),
        ("no numbers here", NUMBER, None),
        ("I don't know, my eyes say not. So the answer is no.</s>", YES_NO, "no"),
        ("I know it's not true for the eyes.", YES_NO, None),  # no marker: only a bare yes/no counts
        ("Yes, birds fly; no doubt about it", YES_NO, "no"),  # no marker: the last match wins
        ("So the answer is true.", YES_NO, "yes"),
        ("I know nothing about eyes", YES_NO, None),  # REF matched 'know'/'no'/'eyes'
        ("Yes it is. So the answer is Yes</s>", YES_NO, "yes"),
        ("So the answer is \\frac{1}{2}.</s>", MATH, "\\frac{1}{2}"),
        ("We get $\\boxed{\\frac{1}{2}}$ in the end", MATH, "\\frac{1}{2}"),
        ("So the answer is $\\boxed{3}$", MATH, "3"),
        ("no box and no marker", MATH, None),
        ("So the answer is", NUMBER, None),
    ],
)
def test_extract_answer(text: str, task: TaskType, expected: str | None) -> None:
    assert extract_answer(text, task) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Pink is a colour, 25 people agree. So the answer is 4</s>", "D"),
     ("So the answer is (D) pink.</s>", "D"),
     ("So the answer is pink</s>", "D"),
     ("So the answer is pink flowers, option 4.", "D"),
     ("There are 25 options. So the answer is 25.", None),  # never the 5 inside 25
     ("A gender reveal uses pink, so option (D) fits", "D"),
     ("A cat sat on a mat.", None)],  # a capital 'A' without a marker is not an answer
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_answer(text, CHOICE, ECQA_OPTIONS) == expected


def test_extract_choice_arc_letters() -> None:
    assert extract_answer("So the answer is B.</s>", CHOICE, ["w", "x", "y", "z"]) == "B"
    assert extract_answer("So the answer is E.", CHOICE, ["w", "x", "y", "z"]) is None


def test_extract_agrees_with_real_model_solution_labels() -> None:
    lines = data_file("gsm8k", "model_solutions.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    for line in lines:
        row = json.loads(line)
        gold = extract_answer(row["ground_truth"], NUMBER)
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            sol = row[model]
            assert is_equivalent(extract_answer(sol["solution"], NUMBER), gold, NUMBER) is sol["is_correct"]


# -- parse_json_output ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"reasoning": "r", "answer": "18", "confidence_level": "0.9"}',
        'Here you go:\n```json\n{"reasoning": "r", "answer": "18", "confidence_level": "0.9"}\n```\nThanks',
        'Sure! {"reasoning": "r", "answer": "18", "confidence_level": "0.9",} Hope it helps.',
        "{'reasoning': 'r', 'answer': '18', 'confidence_level': '0.9'}",
        '{"Reasoning": "r", "Answer": "18", "confidence_level": "0.9"}',
        '{"reasoning": "line one\nline two {braces}", "answer": "18", "confidence_level": "0.9"}',
    ],
)
def test_parse_json_output_tolerates_common_noise(text: str) -> None:
    obj = parse_json_output(text)
    assert obj["answer"] == "18"
    assert obj["confidence_level"] == "0.9"


def test_parse_json_output_python_dict_with_apostrophe_and_literals() -> None:
    obj = parse_json_output("{'reasoning': 'Janet's ducks lay 16', 'answer': 18, 'confidence_level': 0.9}")
    assert obj == {"reasoning": "Janet's ducks lay 16", "answer": 18, "confidence_level": 0.9}
    assert parse_json_output('{"answer": true, "x": null}') == {"answer": True, "x": None}


def test_parse_json_output_takes_the_object_with_an_answer() -> None:
    text = 'Schema: {"reasoning": "", "confidence_level": ""}. Mine: {"reasoning": "r", "answer": "no"}'
    assert parse_json_output(text)["answer"] == "no"


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("The answer is 18.", "no '{' in output"), ('{"answer": 18', "without a matching"), ('{"reasoning": "r", "confidence_level": 1}', "no 'answer' key"),
     ('{"reasoning": "r" "answer": 18}', "could not parse")],
)
def test_parse_json_output_errors_are_precise(text: str, message: str) -> None:
    with pytest.raises(AnswerParseError, match=message):
        parse_json_output(text)


def test_answer_parse_error_is_a_value_error() -> None:
    assert issubclass(AnswerParseError, ValueError)


# -- confidence and votes ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.9", 0.9), (0.9, 0.9), ("90%", 0.9), ("85", 0.85), (85, 0.85), (1, 1.0), ("1.0", 1.0), (0, 0.0),
     ("0.8 (fairly sure)", 0.8), (100, 1.0), ("abc", None), (-0.1, None), (101, None), ("150%", None),
     (None, None), (True, None), (float("nan"), None)],
)
def test_parse_confidence(raw: object, expected: float | None) -> None:
    got = parse_confidence(raw)
    assert got == pytest.approx(expected) if expected is not None else got is None


@pytest.mark.parametrize(
    ("x", "expected"),
    [(0.0, 0.1), (0.6, 0.1), (0.61, 0.3), (0.79, 0.3), (0.8, 0.5), (0.89, 0.5), (0.9, 0.8), (0.99, 0.8),
     (1.0, 1.0), (1.5, 1.0)],
)
def test_recalibrate_confidence(x: float, expected: float) -> None:
    assert recalibrate_confidence(x) == expected


def test_weighted_vote_sums_recalibrated_confidences() -> None:
    # 'a': 0.1 + 0.1; 'b': 0.8 -> b wins though it is the minority.
    assert weighted_vote(["a", "a", "b"], [0.5, 0.5, 0.95]) == "b"
    assert weighted_vote(["a", "b", "b"], [1.0, 0.5, 0.5]) == "a"  # 1.0 vs 0.1 + 0.1
    assert weighted_vote(["a", "b", "b"], [1.0, 0.95, 0.95]) == "b"  # 1.0 vs 0.8 + 0.8
    assert weighted_vote(["a", "b"], [0.9, 0.9]) == "a"  # tie -> first seen
    assert weighted_vote(["a", "b", "c"], [0.7, 0.3, 0.1]) == "a"


def test_weighted_vote_none_handling() -> None:
    assert weighted_vote([None, "b"], [1.0, 0.1]) == "b"
    assert weighted_vote(["a", "b"], [None, 0.1]) == "a"  # ReConcile: None -> 0.0 -> 0.1, a tie: first seen
    assert weighted_vote(["a", "b"], [None, 0.1], missing_confidence="ignore") == "b"  # None adds nothing
    assert weighted_vote(["a", "b"], [None, None]) == "a"
    assert weighted_vote([], []) is None
    assert weighted_vote([None], [0.9]) is None
    with pytest.raises(ValueError):
        weighted_vote(["a"], [])


def test_weighted_vote_float_sums_tie_to_first_seen() -> None:
    # 0.3+0.1 vs 0.1+0.3 may differ in the last bit; both must count as a tie.
    assert weighted_vote(["a", "b", "b", "a"], [0.7, 0.5, 0.7, 0.5]) == "a"


def test_majority_vote() -> None:
    assert majority_vote(["a", "b", "b"]) == "b"
    assert majority_vote(["a", "b"]) == "a"
    assert majority_vote(["b", None, "a", "a", "b"]) == "b"
    assert majority_vote([None, None]) is None


# -- remove_agreement and dataset tasks -----------------------------------------------------------
def test_remove_agreement_reference_rule() -> None:
    text = "I agree with Agent 2. The sum is 18. I disagree with Agent 3. So 18"
    assert remove_agreement(text) == "The sum is 18. So 18"
    # the reference's quirks are kept on purpose: mid-sentence and partial agreement survive,
    # and dropping the last piece loses its final period.
    assert remove_agreement("Yes, I agree. I partially agree. It is 5") == "Yes, I agree. I partially agree. It is 5"
    assert remove_agreement("It is 5. I agree with all.") == "It is 5"
    assert remove_agreement("Agreed. Fine", prefixes=("Agreed",)) == "Fine"


@pytest.mark.parametrize(
    ("name", "task"),
    [("gsm8k", NUMBER), ("GSM8K-train", NUMBER), ("strategyqa", YES_NO), ("SQA", YES_NO), ("ecqa", CHOICE),
     ("commonsenseqa", CHOICE), ("csqa", CHOICE), ("ARC-Challenge", CHOICE), ("arc_easy", CHOICE),
     ("aqua", CHOICE), ("aqua-rat", CHOICE), ("AQuA_RAT", CHOICE), ("math", MATH), ("MATH-500", MATH),
     ("mathqa", TEXT), ("trivia", TEXT)],
)
def test_task_for_dataset(name: str, task: TaskType) -> None:
    assert task_for_dataset(name) is task


# -- properties ---------------------------------------------------------------------------------
_number_texts = st.one_of(
    st.text(max_size=30),
    st.integers(-10**12, 10**12).map(lambda n: f"{n:,}"),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(lambda d: f"${d}"),
    st.tuples(st.integers(-999, 999), st.integers(1, 999)).map(lambda t: f"{t[0]}/{t[1]}"),
)
_answers = st.one_of(_number_texts, st.sampled_from(["yes", "No.", "true", "FALSE", "know", "eyes", ""]))


@settings(max_examples=300, deadline=None)
@given(_number_texts)
def test_normalize_number_is_idempotent(raw: str) -> None:
    once = normalize_answer(raw, NUMBER)
    assert once is None or normalize_answer(once, NUMBER) == once


@settings(max_examples=300, deadline=None)
@given(_answers, _answers, st.sampled_from([NUMBER, YES_NO]))
def test_is_equivalent_is_symmetric(a: str, b: str, task: TaskType) -> None:
    assert is_equivalent(a, b, task) == is_equivalent(b, a, task)


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**9, 10**9))
def test_integers_round_trip_with_separators_and_signs(n: int) -> None:
    assert normalize_answer(f"{n:,}", NUMBER) == str(n)
    assert extract_answer(f"Blah 25 blah. So the answer is {n:,}.</s>", NUMBER) == str(n)
