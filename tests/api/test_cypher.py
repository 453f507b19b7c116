"""POST /v1/cypher: reads work; every write or escape attempt is a 400 and changes nothing."""

from __future__ import annotations

import pytest
from api_helpers import AUTH, dump

from magdi.store import cypher

# (query, parameters): each must be refused with 400 and leave the database exactly as it was.
ATTACKS: list[tuple[str, dict]] = [
    ("CREATE (n:Pwned) RETURN n", {}),
    ("cReAtE (:Pwned)", {}),
    ("MERGE (n:Pwned {id: 1}) RETURN n", {}),
    ("MATCH (d:Debate) SET d.team_correct = false", {}),
    ("MATCH (d:Debate) SET d += $props RETURN d", {"props": {"team_correct": False}}),
    ("MATCH (r:Response) DELETE r", {}),
    ("MATCH (n) DETACH DELETE n", {}),
    ("MATCH (d:Debate) REMOVE d.team_answer", {}),
    ("MATCH (d:Debate) REMOVE d:Debate", {}),
    ("FOREACH (x IN range(1, 3) | CREATE (:Pwned))", {}),
    ("MATCH (d:Debate) CALL (d) { SET d.x = 1 } RETURN d", {}),
    ("INSERT (:Pwned)", {}),
    ("CALL db.createLabel('Pwned')", {}),
    ("CALL db.createProperty('pwned')", {}),
    ("CALL db.createRelationshipType('PWNED')", {}),
    ("CALL db.createLabel($label)", {"label": "Pwned"}),
    ("CALL dbms.setConfigValue('db.logs.query.enabled', 'off')", {}),
    ("CALL dbms.listConfig()", {}),
    ("CALL db.clearQueryCaches()", {}),
    ("CALL db.stats.collect('QUERIES')", {}),
    ("LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line", {}),
    ("LOAD CSV FROM 'http://127.0.0.1:9/x.csv' AS line RETURN line", {}),
    ("LOAD CSV WITH HEADERS FROM $url AS row CREATE (:Pwned {v: row.v})", {"url": "file:///x.csv"}),
    ("MATCH (d:Debate) CALL (d) { DETACH DELETE d } IN TRANSACTIONS", {}),
    ("CALL { MATCH (n) RETURN n } IN TRANSACTIONS RETURN count(n) AS c", {}),
    ("CREATE USER mallory SET PASSWORD 'correct-horse-battery'", {}),
    ("ALTER USER neo4j SET PASSWORD 'correct-horse-battery'", {}),
    ("DROP DATABASE neo4j", {}),
    ("SHOW USERS", {}),
    ("SHOW SETTINGS", {}),
    ("SHOW TRANSACTIONS", {}),
    ("TERMINATE TRANSACTIONS 'neo4j-transaction-1'", {}),
    ("GRANT ROLE admin TO mallory", {}),
    ("CREATE DATABASE pwned", {}),
    ("CREATE INDEX pwned FOR (n:Debate) ON (n.team_answer)", {}),
    ("CREATE CONSTRAINT pwned FOR (n:Pwned) REQUIRE n.id IS UNIQUE", {}),
    ("DROP CONSTRAINT debate_id IF EXISTS", {}),
    ("/* harmless */ CREATE (:Pwned)", {}),
    ("// a comment\nCREATE (:Pwned)", {}),
    ("CRE/**/ATE (:Pwned)", {}),
    ("MATCH (n) RETURN count(n) AS c; CREATE (:Pwned)", {}),
    ("MATCH (n) RETURN n LIMIT 1 /* ; */ ; MATCH (m) DETACH DELETE m", {}),
    ("CYPHER runtime=slotted CREATE (:Pwned)", {}),
    ("EXPLAIN CREATE (:Pwned)", {}),
    ("PROFILE MATCH (d:Debate) SET d.x = 1", {}),
    ("/* plan it */ EXPLAIN MERGE (:Pwned)", {}),
    ("PROFILE CALL db.createLabel('Pwned')", {}),
    ("PROFILE LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line", {}),
    ("USE system SHOW USERS", {}),
    ("USE system CALL dbms.showCurrentUser()", {}),
    ("USE system CALL db.labels()", {}),
    ("CALL apoc.cypher.run($q, {})", {"q": "CREATE (:Pwned)"}),
    ("CALL apoc.cypher.doIt($q, {}) YIELD value RETURN value", {"q": "MATCH (n) DETACH DELETE n"}),
    ("CALL dbms.security.createUser('mallory', 'correct-horse-battery', false)", {}),
]


@pytest.fixture
def seeded(store, make_debate):
    store.write_debates([make_debate(i, job_id="job-c") for i in range(3)])
    return store


def test_reads_return_columns_and_rows(client, seeded):
    r = client.post("/v1/cypher", headers=AUTH, json={
        "query": "MATCH (d:Debate)-[:HAS_RESPONSE]->(r:Response) WHERE r.correct = $ok "
                 "RETURN d.id AS debate, count(r) AS n ORDER BY debate", "parameters": {"ok": True}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["columns"] == ["debate", "n"] and out["row_count"] == 3 and not out["truncated"]
    assert sum(row[1] for row in out["rows"]) == 9  # half of 18 responses are correct
    node = client.post("/v1/cypher", headers=AUTH, json={"query": "MATCH (q:Question) RETURN q LIMIT 1"}).json()
    assert node["rows"][0][0]["_labels"] == ["Question"] and "text" in node["rows"][0][0]
    labels = client.post("/v1/cypher", headers=AUTH, json={"query": "CALL db.labels() YIELD label RETURN label"})
    assert labels.status_code == 200 and ["Debate"] in labels.json()["rows"]
    odd = client.post("/v1/cypher", headers=AUTH, json={
        "query": "RETURN 0.0/0.0 AS nan, point({x: 1, y: 2}) AS p, duration('P1D') AS d, $b AS b",
        "parameters": {"b": "x"}}).json()
    assert odd["rows"][0][0] == "NaN" and odd["rows"][0][1]["coordinates"] == [1.0, 2.0] and odd["rows"][0][2] == "P1D"


def _operators(plan: dict) -> list[dict]:
    return [plan, *(op for child in plan.get("children", []) for op in _operators(child))]


def test_explain_returns_the_plan_and_profile_adds_rows_and_db_hits(client, seeded):
    before = dump(seeded.driver)
    query = "MATCH (d:Debate)-[:HAS_RESPONSE]->(r:Response) RETURN count(r) AS n"
    explained = client.post("/v1/cypher", headers=AUTH, json={"query": f"EXPLAIN {query}"}).json()
    assert explained["columns"] == [] and explained["rows"] == [] and explained["row_count"] == 0
    assert explained["plan"]["operatorType"].startswith("ProduceResults")
    assert "dbHits" not in explained["plan"]  # planned, not run

    profiled = client.post("/v1/cypher", headers=AUTH, json={"query": f"// why slow?\nprofile {query}"}).json()
    assert profiled["columns"] == ["n"] and profiled["rows"] == [[18]]
    ops = _operators(profiled["plan"])
    assert profiled["plan"]["rows"] == 1 and sum(op["dbHits"] for op in ops) > 0
    assert client.post("/v1/cypher", headers=AUTH, json={"query": query}).json()["plan"] is None

    twice = client.post("/v1/cypher", headers=AUTH, json={"query": f"EXPLAIN PROFILE {query}"})
    assert twice.status_code == 400 and "at most" in twice.json()["detail"]
    assert dump(seeded.driver) == before


def test_a_query_string_in_a_parameter_stays_a_string(client, seeded):
    before = dump(seeded.driver)
    r = client.post("/v1/cypher", headers=AUTH, json={"query": "RETURN $q AS q",
                                                      "parameters": {"q": "MATCH (n) DETACH DELETE n"}})
    assert r.status_code == 200 and r.json()["rows"] == [["MATCH (n) DETACH DELETE n"]]
    assert dump(seeded.driver) == before


def test_row_cap_and_timeout(make_client, seeded):  # noqa: ARG001 - data for the query
    client = make_client(cypher_max_rows=5, cypher_timeout_s=1.0)
    r = client.post("/v1/cypher", headers=AUTH, json={"query": "UNWIND range(1, 100) AS x RETURN x"})
    assert r.status_code == 200 and r.json()["row_count"] == 5 and r.json()["truncated"] is True
    slow = client.post("/v1/cypher", headers=AUTH, json={
        "query": "UNWIND range(1, 2000000000) AS x WITH x WHERE x % 7 = 3 RETURN count(*) AS n"})
    assert slow.status_code == 400 and "timeout" in slow.json()["detail"]


@pytest.mark.parametrize("body", [
    {"query": "MATCH (n RETURN n"}, {"query": "RETURN $missing"}, {"query": "   "}, {"query": ""},
    {"query": "RETURN 1", "parameters": []}, {"parameters": {}}, {"query": "RETURN 1", "extra": 1},
])
def test_syntax_and_body_errors_are_4xx(client, body):
    r = client.post("/v1/cypher", headers=AUTH, json=body)
    assert r.status_code in (400, 422), r.text
    assert r.json()["detail"]


def test_every_write_or_escape_attempt_is_refused_and_changes_nothing(client, seeded):
    assert len(ATTACKS) >= 20
    before = dump(seeded.driver)
    assert before["nodes"] and before["labels"]
    outcomes = {q: client.post("/v1/cypher", headers=AUTH, json={"query": q, "parameters": p}) for q, p in ATTACKS}
    wrong = {q: (r.status_code, r.text[:200]) for q, r in outcomes.items() if r.status_code != 400}
    assert not wrong
    assert all(r.json()["detail"] for r in outcomes.values())
    assert dump(seeded.driver) == before


def test_the_read_transaction_alone_refuses_writes(seeded, monkeypatch):
    """Guard 3 on its own: with the text and plan checks switched off, the server still refuses."""
    before = dump(seeded.driver)
    monkeypatch.setattr(cypher, "check_text", lambda query: None)
    monkeypatch.setattr(cypher, "check_plan", lambda *a, **k: None)
    for query in ("CREATE (:Pwned)", "MATCH (d:Debate) SET d.x = 1", "CALL db.createLabel('Pwned')"):
        with pytest.raises(cypher.CypherRejected, match="(?i)write|access"):
            cypher.run_readonly(seeded.driver, query)
    assert dump(seeded.driver) == before


def test_the_plan_check_alone_refuses_writes(seeded, monkeypatch):
    """Guard 2 on its own: with the text check off, EXPLAIN classifies and refuses."""
    monkeypatch.setattr(cypher, "check_text", lambda query: None)
    for query in ("CREATE (:Pwned)", "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l", "SHOW SETTINGS",
                  "TERMINATE TRANSACTIONS 'x'", "CALL db.createLabel('Pwned')", "CALL dbms.listConfig()"):
        with pytest.raises(cypher.CypherRejected):
            cypher.run_readonly(seeded.driver, query)


def test_skeleton_ignores_literals_and_comments():
    assert cypher.skeleton("RETURN 'CREATE ;' AS `LOAD CSV` // DROP\n") == "RETURN '' AS _  \n"
    cypher.check_text("MATCH (n) WHERE n.text = 'SHOW USERS; LOAD CSV' RETURN n /* CREATE */")
    cypher.check_text("CYPHER runtime=slotted MATCH (n) RETURN n;")
    with pytest.raises(cypher.CypherRejected):
        cypher.check_text("CYPHER runtime=slotted SHOW USERS")


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("query", "parameters", "needle"), [
    ("RETURN " + "[" * 300 + "]" * 300, {}, "nested"),
    ("RETURN " + "CASE WHEN true THEN " * 40 + "1" + " END" * 40, {}, "nested"),
    ("RETURN " + "NOT " * 400 + "true", {}, "chained"),
    ("WITH {} AS m RETURN m" + ".a" * 400, {}, "chained"),
    ("WITH [] AS m RETURN m" + "[0]" * 400, {}, "chained"),
    ("RETURN " + "'a' + " * 250 + "'a'", {}, "operators"),
    ("RETURN 1 IN [" + ",".join(["1"] * 1500) + "]", {}, "too long"),
    ("RETURN $x", {"x": 2**70}, "64-bit"),
    ("RETURN $x", {"x": _nested(40)}, "nested"),
])
def test_inputs_that_would_crash_the_server_or_driver_are_400(client, query, parameters, needle):
    """Guards a known Neo4j 5 behaviour: these overflow its parser's stack, after which the server
    never answers and the request would hang for the driver's 120 s read timeout (then a 503)."""
    r = client.post("/v1/cypher", headers=AUTH, json={"query": query, "parameters": parameters})
    assert r.status_code == 400 and needle in r.json()["detail"], r.text


def test_lone_surrogates_are_4xx_not_500(client):
    for body in ('{"query": "RETURN $x", "parameters": {"x": "\\ud800"}}', '{"query": "RETURN \'\\ud800\'"}'):
        r = client.post("/v1/cypher", content=body, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code in (400, 422), r.text
