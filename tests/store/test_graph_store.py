"""The graph store against the real Neo4j: idempotent writes, exact reads, pagination, stats."""

from __future__ import annotations

import pytest

from magdi.mag import DebateStatus, ParseStatus, Response, canonical
from magdi.store.graph_store import DebateFilter, GraphStore, decode_cursor


def count(store: GraphStore, label: str) -> int:
    return store.driver.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n").records[0]["n"]


def test_write_then_read_returns_the_same_mag(store, make_debate):
    debate = make_debate(1, rounds=3)
    store.write_debate(debate)
    assert store.get_debate(debate.id) == canonical(debate)


def test_schema_names_that_cypher_users_rely_on(store, make_debate):
    debate = make_debate(2)
    store.write_debate(debate)
    rows, _, _ = store.driver.execute_query(
        """
        MATCH (q:Question)<-[:ON]-(d:Debate {id: $id})-[:HAS_RESPONSE]->(r:Response)-[:BY]->(a:Agent)
        OPTIONAL MATCH (r)-[i:INFORMS]->(:Response)
        RETURN count(DISTINCT r) AS nodes, count(i) AS edges, collect(DISTINCT a.name) AS agents,
               collect(DISTINCT i.same_agent) AS same
        """,
        id=debate.id,
    )
    assert rows[0]["nodes"] == 6
    assert rows[0]["edges"] == 9  # 3 agents x 3 agents, one transition
    assert sorted(rows[0]["agents"]) == ["alice", "bob", "carol"]
    assert sorted(rows[0]["same"]) == [False, True]


def test_writing_twice_adds_nothing(store, make_debate):
    debates = [make_debate(i) for i in range(5)]
    store.write_debates(debates)
    before = {label: count(store, label) for label in ("Question", "Debate", "Response", "Agent")}
    store.write_debates(debates)
    after = {label: count(store, label) for label in ("Question", "Debate", "Response", "Agent")}
    assert before == after == {"Question": 5, "Debate": 5, "Response": 30, "Agent": 3}
    rels = store.driver.execute_query("MATCH ()-[r:INFORMS]->() RETURN count(r) AS n").records[0]["n"]
    assert rels == 5 * 9


def test_replace_removes_stale_nodes_but_partial_write_keeps_them(store, make_debate):
    full = make_debate(3, rounds=3, job_id="job-replace")  # a job's debate keeps its id as it changes
    store.write_debate(full)
    shorter = make_debate(3, rounds=2, job_id="job-replace").model_copy(update={"created_at": full.created_at})
    store.write_debate(shorter, replace=False)
    assert store.get_debate(full.id).rounds() == 3
    store.write_debate(shorter)
    assert store.get_debate(full.id) == canonical(shorter)


def test_thousand_mags_round_trip_unchanged_and_rewrite_adds_nothing(store, make_debate):
    debates = [make_debate(i, job_id="job-bulk") for i in range(1000)]
    for i in range(0, 1000, 250):
        store.write_debates(debates[i : i + 250])
    back = {d.id: d for d in store.iter_debates(DebateFilter(job_id="job-bulk"), batch_size=128)}
    assert len(back) == 1000
    assert all(back[d.id] == canonical(d) for d in debates)
    nodes = count(store, "Response")
    store.write_debates(debates[:250])
    assert count(store, "Response") == nodes == 6000


def test_absent_and_invalid_nodes_round_trip(store, make_debate):
    d = make_debate(4)
    responses = [r for r in d.responses if not (r.agent == "carol" and r.round == 1)]
    responses.append(Response(agent="carol", round=1, parse_status=ParseStatus.ABSENT))
    responses[0] = responses[0].model_copy(
        update={"parse_status": ParseStatus.INVALID, "answer": None, "correct": None, "parse_error": "no JSON"}
    )
    d = d.model_copy(update={"responses": responses, "edges": []})
    store.write_debate(d)
    back = store.get_debate(d.id)
    assert back == canonical(d)
    assert back.response("carol", 1).label == 2


def test_keyset_pagination_visits_each_debate_once(store, make_debate):
    store.write_debates([make_debate(i, dataset="ds-a" if i % 2 else "ds-b") for i in range(23)])
    seen, cursor = [], None
    while True:
        page = store.list_debates(DebateFilter(dataset="ds-a"), limit=5, cursor=cursor)
        seen += [item["id"] for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 11
    assert seen == sorted(seen)


def test_bad_cursor_is_a_value_error():
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor("not-a-cursor")


def test_filters(store, make_debate):
    store.write_debates([make_debate(i, agents=("x", "y") if i < 3 else ("alice", "bob")) for i in range(6)])
    assert store.count_debates(DebateFilter(agent="x")) == 3
    assert store.count_debates(DebateFilter(agent="alice", rounds_used=2)) == 3
    assert store.count_debates(DebateFilter(team_correct=False)) == 0


def test_delete_removes_the_mag_and_its_orphan_question(store, make_debate):
    a, b = make_debate(7), make_debate(8)
    store.write_debates([a, b])
    assert store.delete_debate(a.id)
    assert store.get_debate(a.id) is None
    assert store.get_debate(b.id) is not None
    assert count(store, "Question") == 1
    assert not store.delete_debate(a.id)


def test_stats(store, make_debate):
    store.write_debates([make_debate(i) for i in range(4)])
    s = store.stats()
    assert s.debates == 4
    assert s.team_accuracy == 1.0
    assert s.consensus_rate == 0.0
    assert s.mean_rounds == 2.0
    assert s.tokens_out == 4 * (2 * (20 + 21 + 22))
    by_agent = {a["agent"]: a for a in s.agents}
    # alice answers correctly in round 0 iff i is even: 2 of 4
    assert by_agent["alice"]["round0_accuracy"] == 0.5
    empty = store.stats(DebateFilter(dataset="nothing"))
    assert empty.debates == 0 and empty.team_accuracy is None


def test_write_turns_appends_only_the_named_responses(store, make_debate):
    full = make_debate(9, rounds=3, job_id="job-turns")
    round0 = full.model_copy(update={
        "responses": [r for r in full.responses if r.round == 0], "edges": [], "status": DebateStatus.RUNNING})
    store.write_turns([(round0, {(r.agent, 0) for r in round0.responses})])
    assert store.get_debate(full.id).rounds() == 1
    # the later turns arrive; earlier responses are not resent, yet the stored MAG is complete
    store.write_turns([(full, {(r.agent, r.round) for r in full.responses if r.round > 0})])
    assert store.get_debate(full.id) == canonical(full)
    assert count(store, "Response") == 9
