"""Protocol unit tests: debate block, topologies, stopping rules, parsing, demos, final vote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magdi.answers import AnswerParseError, recalibrate_confidence
from magdi.mag import Agent, Debate, ParseStatus, Question, Response, TaskType
from services.generator.protocols import ProtocolConfig, build_protocol, load_convincing, parse_turn, prompts
from services.generator.protocols.base import visible_sources
from services.generator.protocols.prompts import Shown
from services.teachers.policy import parse_debate

AGENTS = ["a", "b", "c"]
Q = Question(dataset="gsm8k", qid="7", text="What is 9 + 9?", task=TaskType.NUMBER, gold_answer="18")


def debate(rows: list[tuple[str, int, str | None, float | None]], question: Question = Q) -> Debate:
    """rows: (agent, round, answer or None for invalid, confidence)."""
    responses = []
    for agent, rnd, answer, conf in rows:
        if answer == "ABSENT":
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.ABSENT, parse_error="down"))
        elif answer is None:
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.INVALID, raw_text="oops"))
        else:
            responses.append(Response(agent=agent, round=rnd, answer=answer, reasoning=f"{agent} says {answer}.",
                                      confidence=conf))
    return Debate(question=question, panel=[Agent(name=a, model=f"m-{a}") for a in AGENTS], responses=responses)


def proto(**cfg: object):  # noqa: ANN201 - ReconcileProtocol | DebateProtocol
    return build_protocol(ProtocolConfig(**cfg), {a: a for a in AGENTS})


def test_debate_block_shows_every_answer_group() -> None:
    """docs/method.md D14: ReConcile's most_common(2) drops the third answer when all three disagree; we keep it."""
    shown = [Shown("a", "18", "9 + 9 = 18", 0.9), Shown("b", "20", "I added wrong", 0.7),
             Shown("c", "17", "off by one", 0.65), Shown("d", "20", "twenty", 0.8)]
    block = prompts.debate_block(shown)
    assert block.index("There are 2 agents who think the answer is 20.") < block.index("answer is 18.")
    assert "There is 1 agent who thinks the answer is 17." in block
    assert block.count("One agent solution: ") == 4
    assert "I think the answer is 18 because 9 + 9 = 18. My confidence level is 0.9." in block


def test_debate_block_is_read_back_by_the_simulated_panel() -> None:
    """The contract with teachers.policy.parse_debate: same answers and confidences come back."""
    shown = [Shown("a", "18", "Janet sells 9 eggs. So 9 * 2 = 18.", 0.92), Shown("b", "26", "13 * 2 = 26", 0.6),
             Shown("c", "224", "", None)]
    entries = parse_debate(prompts.reconcile_discussion("Q: whatever", shown))
    assert [(e.answer, e.confidence) for e in entries] == [("18", 0.92), ("26", 0.6), ("224", 0.5)]


def test_round0_prompt_and_demos_are_from_other_agents(gsm8k: dict[str, Path]) -> None:
    bank = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, ["chatgpt", "claude", "bard"])
    p = build_protocol(ProtocolConfig(demos=bank), {"a": "chatgpt", "b": "claude", "c": "bard"})
    turns = p.turns(debate([]), 0)
    assert [t.agent for t in turns] == AGENTS and all(t.sources == () for t in turns)
    demo_questions = {t.agent: [m["content"] for m in t.messages if m["role"] == "user"][:-1] for t in turns}
    chatgpt_qs = {f"Q: {d.question}" for d in bank["chatgpt"]}
    assert not chatgpt_qs & set(demo_questions["a"]), "an agent never sees its own convincing samples"
    assert chatgpt_qs <= set(demo_questions["b"]) and chatgpt_qs <= set(demo_questions["c"])
    assert len(demo_questions["a"]) == len(bank["claude"]) + len(bank["bard"])
    last = turns[0].messages[-1]["content"]
    assert last.startswith("Q: What is 9 + 9?") and '"confidence_level"' in last
    assert 'Only place a single numeric value in the "answer" field.' in last
    assert json.loads(turns[0].messages[1]["content"]).keys() == {"reasoning", "answer"}


def test_choice_options_are_lettered_in_prompt_and_demos(gsm8k: dict[str, Path]) -> None:
    """D18: ECQA options were unnumbered while the answer had to be 1-5."""
    ecqa = load_convincing(gsm8k["convincing"], "ecqa", TaskType.CHOICE, ["chatgpt"])["chatgpt"]
    assert ecqa[0].options and ecqa[0].answer in "ABCDE"
    q = Question(dataset="ecqa", qid="1", text="Where do fish live?", task=TaskType.CHOICE,
                 options=["tree", "water", "sky"], gold_answer="B")
    msgs = prompts.demo_messages(ecqa[:1])
    assert "(A) " in msgs[0]["content"] and "(E) " in msgs[0]["content"]
    text = prompts.round0_request(q, confidence=True)
    assert "(A) tree\n(B) water\n(C) sky" in text and "Only place A,B,C representing your choice" in text
    assert parse_turn('{"reasoning": "wet", "answer": "water", "confidence_level": 0.9}', q).answer == "B"


def test_missing_convincing_file_is_a_clear_error(gsm8k: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="no convincing samples for gpt5"):
        load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, ["chatgpt", "gpt5"])


def test_reconcile_stops_on_consensus_and_continues_on_disagreement() -> None:
    p = proto(max_rounds=3)
    assert p.next_round(debate([])) == 0
    agree = debate([("a", 0, "18", 0.9), ("b", 0, "18", 0.8), ("c", 0, "18", 1.0)])
    assert p.next_round(agree) is None
    out = p.outcome(agree)
    assert out.consensus and out.team_answer == "18" and out.team_correct and out.rounds_used == 1
    split = debate([("a", 0, "18", 0.9), ("b", 0, "20", 0.8), ("c", 0, "18", 1.0)])
    assert p.next_round(split) == 1
    partial = debate([("a", 0, "18", 0.9), ("b", 0, "20", 0.8), ("c", 0, "18", 1.0), ("a", 1, "18", 0.9)])
    assert p.next_round(partial) == 1, "a round cut short is filled in, not skipped"
    rows = [(a, r, "18" if a != "b" else "20", 0.9) for r in range(4) for a in AGENTS]
    assert p.next_round(debate(rows)) is None, "max_rounds discussion rounds at most"


def test_reconcile_round1_shows_valid_answers_only_and_records_edges() -> None:
    d = debate([("a", 0, "18", 0.9), ("b", 0, "20", 0.8), ("c", 0, None, None)])
    turns = proto().turns(d, 1)
    assert [t.agent for t in turns] == AGENTS
    for t in turns:
        assert t.sources == (("a", 0), ("b", 0)), "invalid responses are not shown, so no edge"
        text = t.messages[-1]["content"]
        assert "I think the answer is 18 because" in text and "I think the answer is 20 because" in text
        assert "oops" not in text and prompts.STATE_AGREEMENT in text


def test_absent_agent_drops_out() -> None:
    d = debate([("a", 0, "18", 0.9), ("b", 0, "20", 0.8), ("c", 0, "ABSENT", None)])
    p = proto()
    assert p.next_round(d) == 1
    assert [t.agent for t in p.turns(d, 1)] == ["a", "b"]
    assert "c dropped out in round 0: down" in (p.outcome(d).error or "")


def test_ring_and_explicit_topologies() -> None:
    assert visible_sources("ring", AGENTS, "a") == ["a", "c"]
    assert visible_sources("ring", AGENTS, "b") == ["a", "b"]
    d = debate([("a", 0, "1", 0.9), ("b", 0, "2", 0.9), ("c", 0, "3", 0.9)])
    ring = {t.agent: t.sources for t in proto(topology="ring").turns(d, 1)}
    assert ring == {"a": (("a", 0), ("c", 0)), "b": (("a", 0), ("b", 0)), "c": (("b", 0), ("c", 0))}
    explicit = {t.agent: t.sources for t in proto(topology="a->b, c->b, b->a").turns(d, 1)}
    assert explicit == {"a": (("b", 0),), "b": (("a", 0), ("c", 0)), "c": ()}
    for t in proto(topology="ring").turns(d, 1):  # the prompt holds exactly the sources' answers
        text = t.messages[-1]["content"]
        shown = {a for a, _ in t.sources}
        for agent, answer in zip(AGENTS, "123", strict=True):
            assert (f"I think the answer is {answer} because" in text) == (agent in shown)
    with pytest.raises(ValueError, match="not on the panel"):
        build_protocol(ProtocolConfig(topology="a->zed"), {a: a for a in AGENTS})


def test_debate_protocol_runs_fixed_rounds_without_confidence() -> None:
    p = proto(name="debate", max_rounds=2)
    agree = debate([("a", 0, "18", None), ("b", 0, "18", None), ("c", 0, "18", None)])
    assert p.next_round(agree) == 1, "Du et al.: fixed rounds, consensus or not"
    turns = p.turns(agree, 1)
    msgs = turns[0].messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"], "own previous answer as its own turn"
    assert "confidence" not in msgs[0]["content"]
    assert "I think the answer is 18 because b says 18." in msgs[-1]["content"]
    assert turns[0].sources == (("a", 0), ("b", 0), ("c", 0))
    rows = [(a, r, "18", None) for r in range(3) for a in AGENTS]
    assert p.next_round(debate(rows)) is None
    assert p.outcome(debate(rows)).team_answer == "18"


def test_team_answer_is_the_recalibrated_weighted_vote() -> None:
    """Two low-confidence agents (0.1 + 0.1) lose to one sure agent (1.0): ReConcile §4.8."""
    d = debate([("a", 0, "18", 1.0), ("b", 0, "20", 0.5), ("c", 0, "20", 0.55)])
    out = proto(max_rounds=0).outcome(d)
    assert out.team_answer == "18" and out.majority_answer == "20" and not out.consensus
    assert recalibrate_confidence(0.55) == 0.1


def test_parse_turn_never_invents_an_answer() -> None:
    q = Q
    ok = parse_turn('Sure: {"reasoning": ["a", "b"], "answer": "$1,018", "confidence_level": "90%"}', q)
    assert (ok.answer, ok.reasoning, ok.confidence) == ("1018", "a b", 0.9)
    for bad in ("", "The answer is 18.", '{"reasoning": "x", "answer": ""}', '{"reasoning": "x"}'):
        with pytest.raises(AnswerParseError):
            parse_turn(bad, q)


@pytest.mark.parametrize("topology", [[None], [["a"]], [["a", "b", "c"]], ["a-b"], [7]])
def test_a_malformed_topology_is_a_validation_error_not_a_crash(topology: object) -> None:
    """The API validates `protocol` with this model: a bad edge must be a 422, never a TypeError (a 500)."""
    from pydantic import ValidationError

    from magdi.protocol import ProtocolConfig

    with pytest.raises(ValidationError, match="topology"):
        ProtocolConfig(topology=topology)
