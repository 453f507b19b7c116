"""The sft and dpo exporters as pure functions (Debate -> records), and through `magdi export`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from magdi.cli import app as magdi_app
from magdi.formats import dpo, sft
from magdi.formats.exports import EXPORTERS
from magdi.mag import Agent, Debate, ParseStatus, Question, Response, TaskType


def debate(responses: list[Response], options: list[str] | None = None) -> Debate:
    agents = sorted({r.agent for r in responses})
    return Debate(question=Question(dataset="ecqa", qid="1", text="Where do fish live?", task=TaskType.CHOICE,
                                    gold_answer="A", options=options or []),
                  panel=[Agent(name=a, model=f"{a}-m") for a in agents], responses=responses, job_id="job-f")


def resp(agent: str, rnd: int, answer: str | None, correct: bool | None, **kw) -> Response:
    status = kw.pop("parse_status", ParseStatus.VALID)
    return Response(agent=agent, round=rnd, answer=answer, correct=correct, parse_status=status,
                    reasoning=kw.pop("reasoning", f"{agent} r{rnd}. I agree with bob. Fish swim"), model=f"{agent}-m",
                    prompt_hash=f"p-{agent}-{rnd}", confidence=kw.pop("confidence", 0.5), **kw)


def test_sft_keeps_correct_valid_responses_cleaned_and_traced():
    d = debate([resp("alice", 0, "A", True), resp("bob", 0, "B", False), resp("alice", 1, "A", True),
                resp("carol", 0, None, None, parse_status=ParseStatus.INVALID, reasoning=None),
                resp("carol", 1, None, None, parse_status=ParseStatus.ABSENT, reasoning=None)],
               options=["sea", "tree"])
    records = list(sft.iter_records([d]))
    assert [r["metadata"]["node_id"] for r in records] == [d.response_id("alice", 0), d.response_id("alice", 1)]
    first = records[0]
    assert first["messages"][0] == {"role": "user", "content": "Where do fish live? Answer choices: (A) sea (B) tree"}
    assert first["messages"][1] == {"role": "assistant", "content": "alice r0. Fish swim So the answer is A"}
    assert first["metadata"] | {"debate_id": d.id, "model": "alice-m", "prompt_hash": "p-alice-0",
                                "round": 0, "agent": "alice"} == first["metadata"]


def test_sft_drops_a_verbatim_repeat_within_a_debate():
    d = debate([resp("alice", 0, "A", True, reasoning="Same."), resp("alice", 1, "A", True, reasoning="Same.")])
    assert len(list(sft.iter_records([d]))) == 1


def test_dpo_pairs_each_wrong_answer_with_the_nearest_most_confident_right_one():
    d = debate([resp("alice", 0, "A", True, confidence=0.6), resp("bob", 0, "A", True, confidence=0.9),
                resp("carol", 0, "B", False), resp("carol", 1, "C", False), resp("alice", 2, "A", True)])
    pairs = list(dpo.iter_records([d]))
    assert [(p["metadata"]["rejected"]["node_id"], p["metadata"]["chosen"]["node_id"]) for p in pairs] == [
        (d.response_id("carol", 0), d.response_id("bob", 0)),  # same round, most confident
        (d.response_id("carol", 1), d.response_id("bob", 0)),  # rounds 0 and 2 tie: the earlier one
    ]
    assert pairs[0]["chosen"][0]["content"].endswith("So the answer is A")
    assert pairs[0]["rejected"][0]["content"].endswith("So the answer is B")
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Where do fish live?"}]


def test_dpo_needs_both_sides():
    assert list(dpo.iter_records([debate([resp("alice", 0, "A", True), resp("bob", 0, "A", True)])])) == []
    assert list(dpo.iter_records([debate([resp("alice", 0, "B", False)])])) == []


def test_registered_for_magdi_export(neo4j_env, store, make_debate, tmp_path):  # noqa: ARG001 - env for the CLI
    assert {"sft", "dpo"} <= set(EXPORTERS)
    store.write_debates([make_debate(i) for i in range(2)])
    for fmt, expected in (("sft", 6), ("dpo", 6)):
        out = tmp_path / f"{fmt}.jsonl"
        result = CliRunner().invoke(magdi_app, ["export", "--out", str(out), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert len([json.loads(x) for x in out.read_text().splitlines()]) == expected
