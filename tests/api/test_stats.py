"""GET /v1/stats: the store's aggregates over filtered debates."""

from __future__ import annotations

import json

from api_helpers import AUTH
from pytest import approx


def test_stats_over_filters(client, store, make_debate):
    store.write_debates([make_debate(i, job_id="job-s", dataset="gsm8k") for i in range(4)]
                        + [make_debate(9, dataset="aqua", rounds=3)])
    everything = client.get("/v1/stats", headers=AUTH).json()
    assert everything["debates"] == 5 and everything["complete"] == 5
    gsm = client.get("/v1/stats", params={"dataset": "gsm8k", "job": "job-s"}, headers=AUTH).json()
    assert gsm["debates"] == 4 and gsm["mean_rounds"] == 2.0 and gsm["team_accuracy"] == 1.0
    assert gsm["consensus_rate"] == 0.0 and gsm["responses"] == 24
    assert gsm["tokens_in"] == sum(make_debate(i).tokens_in for i in range(4))
    alice = next(a for a in gsm["agents"] if a["agent"] == "alice")
    # alice (k=0) is right in round 0 iff i is even: debates 0 and 2 of 0..3
    assert alice["round0_accuracy"] == 0.5 and alice["debates"] == 4
    empty = client.get("/v1/stats", params={"dataset": "none"}, headers=AUTH).json()
    assert empty["debates"] == 0 and empty["team_accuracy"] is None and empty["agents"] == []
    assert client.get("/v1/stats", params={"rounds_used": "x"}, headers=AUTH).status_code == 422


def _mixed_debates() -> list:
    """Four debates of one job, by hand: every stats figure then has a non-trivial expected value.

    | debate | status   | consensus | team (gold 18)   | majority | rounds | invalid |
    | d1     | complete | yes       | 18 correct       | 18 ok    | 1      | 0       |
    | d2     | complete | no        | 7 incorrect      | 18 ok    | 2      | 0       |
    | d3     | complete | no        | 18 correct       | 5 wrong  | 3      | 1       |
    | d4     | running  | (null)    | (none yet)       | (none)   | (null) | 0       |
    """
    from magdi.mag import Agent, Debate, DebateStatus, ParseStatus, Question, Response, TaskType

    panel = [Agent(name=n, model=f"{n}-m") for n in ("a", "b", "c")]

    def resp(agent: str, rnd: int, answer: str | None, conf: float = 0.9, tokens: int = 10) -> Response:
        if answer is None:
            return Response(agent=agent, round=rnd, parse_status=ParseStatus.INVALID, raw_text="??",
                            parse_error="no JSON", tokens_in=tokens, tokens_out=tokens)
        return Response(agent=agent, round=rnd, answer=answer, reasoning="r", confidence=conf, correct=answer == "18",
                        tokens_in=tokens, tokens_out=tokens, cost_usd=0.001)

    def debate(i: int, rows: list[Response], **outcome: object) -> Debate:
        q = Question(dataset="gsm8k", qid=str(i), text=f"mixed question {i}", task=TaskType.NUMBER, gold_answer="18")
        return Debate(question=q, job_id="job-mixed", panel=panel, responses=rows, **outcome)

    d1 = debate(1, [resp("a", 0, "18"), resp("b", 0, "18"), resp("c", 0, "18")],
                team_answer="18", team_correct=True, majority_answer="18", consensus=True, rounds_used=1)
    d2 = debate(2, [resp("a", 0, "18"), resp("b", 0, "7"), resp("c", 0, "18"),
                    resp("a", 1, "18", 0.5), resp("b", 1, "7", 1.0), resp("c", 1, "18", 0.5)],
                team_answer="7", team_correct=False, majority_answer="18", consensus=False, rounds_used=2)
    d3 = debate(3, [resp("a", 0, "5"), resp("b", 0, "18"), resp("c", 0, "5"),
                    resp("a", 1, "5"), resp("b", 1, "18"), resp("c", 1, None),
                    resp("a", 2, "5", 0.5), resp("b", 2, "18", 1.0), resp("c", 2, "5", 0.5)],
                team_answer="18", team_correct=True, majority_answer="5", consensus=False, rounds_used=3)
    d4 = debate(4, [resp("a", 0, "18"), resp("b", 0, "3")], status=DebateStatus.RUNNING)
    return [d1, d2, d3, d4]


def test_stats_every_figure_on_a_mixed_job(client, store):
    """Correct, incorrect, consensus, non-consensus and a running debate: each figure asserted."""
    store.write_debates(_mixed_debates())
    s = client.get("/v1/stats", params={"job": "job-mixed"}, headers=AUTH).json()
    assert s["debates"] == 4 and s["complete"] == 3
    assert s["consensus_rate"] == approx(1 / 3)  # d1 of d1..d3; the running d4 is not counted yet
    assert s["mean_rounds"] == 2.0  # (1 + 2 + 3) / 3: d4 has no round count yet
    assert s["team_accuracy"] == approx(2 / 3)  # d1, d3 of d1..d3
    assert s["majority_accuracy"] == approx(2 / 3)  # d1, d2 (d3's majority 5 is wrong; d4 has none)
    assert s["responses"] == 3 + 6 + 9 + 2 and s["invalid_responses"] == 1
    assert s["tokens_in"] == s["tokens_out"] == 10 * 20
    assert s["tokens_per_debate"] == 400 / 4
    assert abs(s["cost_usd"] - 0.019) < 1e-9
    agents = {a["agent"]: a for a in s["agents"]}
    assert [agents[n]["debates"] for n in "abc"] == [4, 4, 3]
    assert agents["a"]["round0_accuracy"] == approx(3 / 4) and agents["a"]["final_accuracy"] == approx(3 / 4)
    assert agents["b"]["round0_accuracy"] == approx(2 / 4) and agents["b"]["final_accuracy"] == approx(2 / 4)
    # c: round 0 right in d1, d2 (2/3); last VALID answer: d1 18, d2 18, d3 5 (round 2) -> 2/3
    assert agents["c"]["round0_accuracy"] == approx(2 / 3) and agents["c"]["final_accuracy"] == approx(2 / 3)
    assert agents["c"]["invalid"] == 1 and agents["c"]["responses"] == 1 + 2 + 3


def test_stats_mid_job_with_no_finished_debate_is_null_not_nan(client, store, neo4j_env):
    """Before any debate finishes, agreement and rounds are unknown: null in the API, n/a in the CLI."""
    from typer.testing import CliRunner

    from magdi.cli import app

    store.write_debates([d for d in _mixed_debates() if d.consensus is None])
    r = client.get("/v1/stats", params={"job": "job-mixed"}, headers=AUTH)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["debates"] == 1 and s["complete"] == 0
    assert s["consensus_rate"] is None and s["mean_rounds"] is None and s["team_accuracy"] is None
    assert s["majority_accuracy"] is None
    result = CliRunner().invoke(app, ["stats", "--job", "mixed"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "consensus rate" in x)
    assert "n/a" in line and "nan" not in result.output.lower()
    as_json = CliRunner().invoke(app, ["stats", "--job", "mixed", "--format", "json"])
    assert json.loads(as_json.output)["consensus_rate"] is None
