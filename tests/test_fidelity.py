"""Protocol fidelity (issue 10, items 8, 9 and 11): exact integer answers, ReConcile's vote on a
missing confidence, and what `magdi.mag` says about the reference's fixed template."""

from __future__ import annotations

import json

import pytest

import magdi.mag
from magdi.answers import is_equivalent, weighted_vote
from magdi.formats import magdi_ref
from magdi.mag import Agent, Debate, Question, Response, TaskType

NUMBER = TaskType.NUMBER


# -- item 8: integer golds are matched exactly -------------------------------------------------------
@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("1000001", "1000000", False),  # within 1e-6 relative: labelled correct before
        ("999999.5", "1000000", False),
        ("1000000.0", "1000000", True),
        ("1,000,000", "1000000", True),
        ("18", "18.00", True),
        ("0.3333333", "1/3", True),  # a non-integer gold keeps its tolerance
        ("0.33334", "1/3", False),
        ("1", "1.0000001", False),  # an integer on either side: exact, so the rule is symmetric
        ("1.0000001", "1", False),
    ],
)
def test_integer_golds_compare_exactly(pred: str, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold, NUMBER) is expected
    assert is_equivalent(gold, pred, NUMBER) is expected


def test_imported_node_labels_use_the_exact_rule(tmp_path) -> None:  # noqa: ANN001
    record = {"question": "How many?", "gold_answer": "1000000",
              "a_output_0": {"reasoning": "r", "answer": "1000001", "confidence_level": 0.9},
              "b_output_0": {"reasoning": "r", "answer": "1000000", "confidence_level": 0.6}}
    path = tmp_path / "mag.json"
    path.write_text(json.dumps([record]))
    [debate], _ = magdi_ref.load(path, dataset="gsm8k")
    labels = {r.agent: r.label for r in debate.responses}
    assert labels == {"a": 0, "b": 1}
    assert debate.team_answer == "1000001" and debate.team_correct is False


# -- item 9: a missing confidence counts as 0.0 (recalibrated 0.1), as in ReConcile -----------------
def test_missing_confidence_counts_as_zero_by_default() -> None:
    # ReConcile: '3' -> 0.1 (None -> 0.0 -> 0.1), '5' -> 0.1, '8' -> 0.1: a tie, first seen wins
    assert weighted_vote(["3", "5", "8"], [None, 0.6, 0.5]) == "3"
    assert weighted_vote(["3", "5", "8"], [None, 0.6, 0.5], missing_confidence="ignore") == "5"
    assert weighted_vote(["a", "b", "b"], [None, None, 0.95]) == "b"
    assert weighted_vote(["a", "a", "b"], [None, None, 0.7]) == "b"  # 0.1 + 0.1 < 0.3
    assert weighted_vote(["a", "a", "b"], [None, None, 0.5]) == "a"  # 0.2 > 0.1
    with pytest.raises(ValueError, match="missing_confidence"):
        weighted_vote(["a"], [None], missing_confidence="drop")  # type: ignore[arg-type]


def _three_way(missing: str | None) -> str | None:
    from services.generator.protocols import ProtocolConfig, build_protocol

    cfg = ProtocolConfig() if missing is None else ProtocolConfig(missing_confidence=missing)
    protocol = build_protocol(cfg, {"a": "a", "b": "b", "c": "c"})
    q = Question(dataset="gsm8k", qid="1", text="?", task=NUMBER, gold_answer="3")
    responses = [Response(agent=a, round=0, answer=ans, reasoning="r", confidence=conf)
                 for a, ans, conf in (("a", "3", None), ("b", "5", 0.6), ("c", "8", 0.5))]
    debate = Debate(question=q, panel=[Agent(name=n, model=n) for n in "abc"], responses=responses)
    return protocol.outcome(debate).team_answer


def test_reconcile_protocol_follows_reconcile_by_default_and_keeps_the_old_rule_as_an_option() -> None:
    assert _three_way(None) == "3"
    assert _three_way("zero") == "3"
    assert _three_way("ignore") == "5"


# -- item 11: the docstring says what the code does -------------------------------------------------
def test_mag_docstring_does_not_promise_a_template_nobody_builds() -> None:
    doc = " ".join((magdi.mag.__doc__ or "").split())
    assert "built only by the trainer's reference mode" not in doc
    assert "3x4 template" in doc and "not built" in doc


def test_trainer_graph_edges_are_the_mags_own_in_every_mode() -> None:
    """Both trainer modes plan graphs with `plan_graph`, which reads the MAG's INFORMS edges (a ring
    topology here, not the reference's full 3x4 pattern)."""
    pytest.importorskip("torch")
    from trainer.graphs import GraphSpec, plan_graph

    q = Question(dataset="gsm8k", qid="1", text="?", task=NUMBER, gold_answer="3")
    responses = [Response(agent=a, round=r, answer="3" if a != "c" else "4", reasoning="r", confidence=0.9,
                          correct=a != "c") for a in "abc" for r in (0, 1)]
    ring = [magdi.mag.Edge(source_agent=s, source_round=0, target_agent=t, target_round=1)
            for s, t in (("a", "a"), ("c", "a"), ("a", "b"), ("b", "b"), ("b", "c"), ("c", "c"))]
    debate = Debate(question=q, panel=[Agent(name=n, model=n) for n in "abc"], responses=responses, edges=ring)
    plan = plan_graph(debate, GraphSpec())
    index = {(r.agent, r.round): i for i, r in enumerate(plan.nodes)}
    expected = sorted((index[(e.source_agent, 0)], index[(e.target_agent, 1)]) for e in ring)
    assert plan.edges == expected and len(plan.edges) == 6  # the 3x4 template would give 9 per transition
