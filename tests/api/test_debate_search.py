"""GET /v1/debates shows each debate's question and searches it: a bounded scan, checked on its plan."""

from __future__ import annotations

from typing import Any

from api_helpers import AUTH

from magdi.mag import Question, TaskType
from magdi.store.graph_store import DebateFilter, GraphStore, list_query

SCANS = {"NodeByLabelScan", "AllNodesScan"}


def with_question(debate, text: str, qid: str):  # noqa: ANN001, ANN201 - a Debate
    q = Question(dataset=debate.question.dataset, qid=qid, text=text, task=TaskType.NUMBER, gold_answer="18")
    return debate.model_copy(update={"question": q})


def walk(client, **params: Any) -> tuple[list[str], int]:  # noqa: ANN001
    """Every id a client paging with `next_cursor` sees, and how many requests it took."""
    got, cursor, requests = [], None, 0
    while True:
        r = client.get("/v1/debates", params={**params, **({"cursor": cursor} if cursor else {})}, headers=AUTH)
        assert r.status_code == 200, r.text
        got += [d["id"] for d in r.json()["items"]]
        cursor, requests = r.json()["next_cursor"], requests + 1
        if cursor is None:
            return got, requests


def test_items_carry_the_question_and_q_searches_text_ids_and_record_ids(client, store, make_debate):
    texts = ["Janet's ducks lay 16 eggs per day.", "A robe takes 2 bolts of blue fiber.",
             "Josh decides to try flipping a house.", "JANET buys a <b>robe</b> & ducks"]
    debates = [with_question(make_debate(i, job_id="job-s"), text, f"rec-{i}") for i, text in enumerate(texts)]
    store.write_debates(debates)
    items = client.get("/v1/debates", headers=AUTH).json()["items"]
    assert {i["id"]: i["question_text"] for i in items} == {d.id: d.question.text for d in debates}

    def found(q: str, **params: Any) -> set[str]:
        return set(walk(client, q=q, **params)[0])

    assert found("janet") == {debates[0].id, debates[3].id}  # any case
    assert found("  ROBE ") == {debates[1].id, debates[3].id}  # trimmed
    assert found("<b>robe</b> &") == {debates[3].id}  # literal text, not a pattern
    assert found(debates[2].id[2:12]) == {debates[2].id}
    assert found("rec-1") == {debates[1].id}
    assert found("ducks", job="job-s") == {debates[0].id, debates[3].id}  # with the list filters
    assert found("ducks", job="job-s", team_correct="false") == set()
    assert found("no such words") == set()
    assert client.get("/v1/debates", params={"q": "x" * 201}, headers=AUTH).status_code == 422


def test_a_search_reads_a_bounded_window_per_request_and_pages_on(make_client, store, make_debate):
    """With a window of 4, each request reads at most 4 debates: a page may be short or empty and
    still go on, and walking the cursors finds every match exactly once, in id order."""
    debates = [with_question(make_debate(i), f"{'needle ' if i % 5 == 0 else ''}question {i}", str(i))
               for i in range(23)]
    store.write_debates(debates)
    client = make_client(search_window=4)
    matches = sorted(d.id for d in debates if d.question.text.startswith("needle"))
    got, requests = walk(client, q="Needle", limit=2)
    assert got == matches and len(matches) == 5
    assert requests >= 23 // 4  # every debate read once, 4 per request
    first = client.get("/v1/debates", params={"q": "needle", "limit": 50}, headers=AUTH).json()
    assert len(first["items"]) <= 4 and first["next_cursor"] is not None
    plain, _ = walk(client, limit=10)  # without q the window does not apply
    assert plain == sorted(d.id for d in debates)


def test_the_search_query_reads_the_window_through_an_index_not_the_store(store: GraphStore, make_debate):
    store.write_debates([make_debate(i, job_id=f"job{i % 3}") for i in range(60)])
    for flt in (DebateFilter(), DebateFilter(job_id="job1")):
        query, params = list_query(flt, None, window=7, needle="janet", take=3)
        with store.driver.session() as session:
            profile = session.run("PROFILE " + query, params).consume().profile
        ops: list[dict[str, Any]] = []
        stack = [profile]
        while stack:
            op = stack.pop()
            ops.append(op)
            stack += op.get("children", [])
        names = {op["operatorType"].split("@")[0] for op in ops}
        assert not names & SCANS, (flt, names)
        assert any("IndexSeek" in n for n in names), names
        assert max(op["rows"] for op in ops if "IndexSeek" in op["operatorType"]) <= 7
