"""GET /v1/stats: the store's aggregates over filtered debates."""

from __future__ import annotations

from api_helpers import AUTH


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
