"""The MAGDi reference format: parsing, bad input, and import -> store -> export round trips."""

from __future__ import annotations

import json

import pytest

from magdi.formats import FormatError, jsonl, magdi_ref
from magdi.mag import ParseStatus, TaskType, canonical

REF_RECORDS = [
    {
        "question": "Natalia sold clips to 48 friends in April, and half as many in May. How many in total?",
        "gold_answer": 72.0,
        "claude_output_0": {"reasoning": "48 + 24 = 72.", "answer": "72", "confidence_level": 0.9},
        "gpt4_output_0": {"reasoning": "48/2 = 24. 48+24 = 72.", "answer": "72.0", "confidence_level": "0.95"},
        "bard_output_0": {"reasoning": "48 * 2 = 96.", "answer": "96", "confidence_level": 0.7},
        "claude_output_1": {"reasoning": "I agree with agent 2. It is 72.", "answer": "72", "confidence_level": 1.0},
        "gpt4_output_1": {"reasoning": "Still 72.", "answer": "72", "confidence_level": 0.95},
        "bard_output_1": {"reasoning": "I was wrong. 72.", "answer": "72", "confidence_level": "85"},
        "vote_1": ["72", "72", "72"],
    },
    {
        "question": "Is 7 prime?",
        "gold_answer": "yes",
        "claude_output_0": {"reasoning": "Only 1 and 7 divide it.", "answer": "yes", "confidence_level": 0.9},
        "gpt4_output_0": {"reasoning": "Yes.", "answer": "yes", "confidence_level": 0.9},
        "bard_output_0": None,
    },
]


def write(tmp_path, records, name="mag.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_parses_any_agents_and_rounds(tmp_path):
    debates, errors = magdi_ref.load(write(tmp_path, REF_RECORDS[:1]), dataset="gsm8k")
    assert errors == []
    (d,) = debates
    assert [a.name for a in d.panel] == ["claude", "gpt4", "bard"]
    assert d.question.task is TaskType.NUMBER
    assert d.rounds_used == 2 and d.consensus is True and d.team_correct is True
    bard0, bard1 = d.response("bard", 0), d.response("bard", 1)
    assert bard0.correct is False and bard1.correct is True
    assert bard1.confidence == pytest.approx(0.85) and bard1.recalibrated_confidence == 0.5
    assert d.response("gpt4", 0).correct is True  # "72.0" == 72.0 by task equivalence, not string equality (docs/method.md D9)
    # forward edges only: every round-0 node informs every round-1 node (reference defect D4 fixed)
    assert len(d.edges) == 9 and all(e.source_round == 0 and e.target_round == 1 for e in d.edges)


def test_missing_output_is_an_absent_node_with_no_edges(tmp_path):
    debates, _ = magdi_ref.load(write(tmp_path, REF_RECORDS), dataset="strategyqa")
    d = debates[1]
    assert d.response("bard", 0).parse_status is ParseStatus.ABSENT
    assert d.response("bard", 0).label == 2
    assert d.rounds_used == 1 and d.edges == []


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"gold_answer": "1", "a_output_0": {"answer": "1"}}], r"record 0, field 'question'"),
        ([{"question": "q", "a_output_0": {"answer": "1", "confidence_level": "high"}}],
         r"record 0, field 'a_output_0'.confidence_level"),
        ([{"question": "q", "a_output_0": "just text"}], r"record 0, field 'a_output_0'"),
        ([{"question": "q"}], r"no `<agent>_output_<round>` fields"),
        ({"question": "q"}, r"expected a JSON list"),
    ],
)
def test_bad_records_name_file_record_and_field(tmp_path, records, message):
    path = write(tmp_path, records)
    with pytest.raises(FormatError, match=message) as info:
        magdi_ref.load(path, dataset="gsm8k")
    assert str(path) in str(info.value)


def test_bad_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"question": ')
    with pytest.raises(FormatError, match="broken.json: not valid JSON"):
        magdi_ref.load(path, dataset="gsm8k")


def test_one_bad_record_imports_nothing_unless_skipped(tmp_path):
    records = REF_RECORDS + [{"question": "", "a_output_0": {"answer": "1"}}]
    path = write(tmp_path, records)
    with pytest.raises(FormatError, match="1 invalid record"):
        magdi_ref.load(path, dataset="gsm8k")
    debates, errors = magdi_ref.load(path, dataset="gsm8k", skip_invalid=True)
    assert len(debates) == 2 and len(errors) == 1


def test_import_store_export_is_identical_up_to_key_order(tmp_path, store):
    path = write(tmp_path, REF_RECORDS)
    debates, _ = magdi_ref.load(path, dataset="gsm8k")
    store.write_debates(debates)
    out = tmp_path / "out.json"
    magdi_ref.dump(store.iter_debates(), out)
    exported = json.loads(out.read_text())
    key = lambda r: r["question"]  # noqa: E731 - export order follows debate ids
    assert sorted(exported, key=key) == sorted(REF_RECORDS, key=key)


def test_jsonl_round_trips_exactly_through_the_store(tmp_path, store, make_debate):
    originals = [canonical(make_debate(i, rounds=1 + i % 3)) for i in range(10)]
    first = tmp_path / "a.jsonl"
    jsonl.dump(originals, first)
    loaded, _ = jsonl.load(first)
    store.write_debates(loaded)
    second = tmp_path / "b.jsonl"
    jsonl.dump(store.iter_debates(), second)
    assert sorted(first.read_text().splitlines()) == sorted(second.read_text().splitlines())


def test_jsonl_rejects_an_id_that_disagrees_with_content(tmp_path, make_debate):
    line = json.loads(jsonl.to_line(make_debate(1)))
    line["id"] = "d-forged"
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(FormatError, match=r"line 1, field 'id'"):
        jsonl.load(path)
