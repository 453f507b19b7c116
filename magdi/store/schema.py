"""Constraints, indexes and schema migrations, applied at start by every process that opens the store.

Migrations are numbered and append-only; the version in force is kept on the single
`:SchemaVersion {id: 'magdi'}` node. A step is a Cypher statement (schema statements are all
`IF NOT EXISTS`) or a Python function for data migrations; every step is idempotent, so a
migration cut short by a crash simply runs again.

Several processes often start together against a fresh database (`docker compose up` starts the
API and a worker at once), so migrating is serialised: the migrating process holds the write
lock of the `:SchemaVersion` node in an open transaction while it runs the steps in others, and
the others wait on that lock, then find the work done. Schema statements that still meet a
concurrent twin ("already exists", e.g. from an older magdi that does not take the lock) count
as done.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import neo4j
from neo4j.exceptions import ClientError

from magdi import ids

log = logging.getLogger(__name__)

# The lock holder's transaction stays open for the whole upgrade (a data migration of a big store
# can take minutes); the waiting processes' lock transactions get the same budget.
LOCK_TIMEOUT_S = 1800.0
_LOCK_CONSTRAINT = ("CREATE CONSTRAINT schema_version_id IF NOT EXISTS FOR (n:SchemaVersion) "
                    "REQUIRE n.id IS UNIQUE")

Step = str | Callable[[neo4j.Driver, str | None], None]

CONSTRAINTS = [
    "CREATE CONSTRAINT question_id IF NOT EXISTS FOR (n:Question) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT debate_id IF NOT EXISTS FOR (n:Debate) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT response_id IF NOT EXISTS FOR (n:Response) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT agent_id IF NOT EXISTS FOR (n:Agent) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT job_id IF NOT EXISTS FOR (n:Job) REQUIRE n.id IS UNIQUE",
    "CREATE CONSTRAINT evalrun_id IF NOT EXISTS FOR (n:EvalRun) REQUIRE n.id IS UNIQUE",
]

INDEXES = [
    "CREATE INDEX debate_dataset IF NOT EXISTS FOR (n:Debate) ON (n.dataset)",
    "CREATE INDEX debate_job IF NOT EXISTS FOR (n:Debate) ON (n.job_id)",
    "CREATE INDEX debate_status IF NOT EXISTS FOR (n:Debate) ON (n.status)",
    "CREATE INDEX question_dataset IF NOT EXISTS FOR (n:Question) ON (n.dataset)",
    "CREATE INDEX response_debate IF NOT EXISTS FOR (n:Response) ON (n.debate_id)",
    "CREATE INDEX response_agent_round IF NOT EXISTS FOR (n:Response) ON (n.agent, n.round)",
    "CREATE INDEX job_status IF NOT EXISTS FOR (n:Job) ON (n.status)",
]

# (version, description, steps). Append only; never edit a released migration.
MIGRATIONS: list[tuple[int, str, list[Step]]] = [
    (1, "constraints and indexes", [*CONSTRAINTS, *INDEXES]),
    (2, "quota shares of generator processes", [
        "CREATE INDEX quota_share_endpoint IF NOT EXISTS FOR (n:QuotaShare) ON (n.endpoint)",
        "CREATE INDEX quota_share_holder IF NOT EXISTS FOR (n:QuotaShare) ON (n.holder)",
    ]),
    # graph_store.page_query sorts a filtered page by (dataset|job_id, id): with these the page is an
    # index seek in order that stops after `limit` rows, not a read and sort of every match.
    (3, "debate pages filtered by dataset or job, in id order", [
        "CREATE INDEX debate_dataset_id IF NOT EXISTS FOR (n:Debate) ON (n.dataset, n.id)",
        "CREATE INDEX debate_job_id_id IF NOT EXISTS FOR (n:Debate) ON (n.job_id, n.id)",
    ]),
    (4, "content-based question ids, collision-free debate ids, shared prompt parts", [
        "CREATE CONSTRAINT prompt_part_id IF NOT EXISTS FOR (n:PromptPart) REQUIRE n.id IS UNIQUE",
        "CREATE INDEX debate_question IF NOT EXISTS FOR (n:Debate) ON (n.question_id)",
        lambda driver, database: migrate_content_ids(driver, database),
    ]),
    (5, "batches of batch-mode jobs (magdi/store/batches.py)", [
        "CREATE CONSTRAINT batch_id IF NOT EXISTS FOR (n:Batch) REQUIRE n.id IS UNIQUE",
        "CREATE INDEX batch_job IF NOT EXISTS FOR (n:Batch) ON (n.job_id)",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
INDEX_WAIT_S = 600  # how long a start waits for new indexes to come online


BATCH = 200


def migrate_content_ids(driver: neo4j.Driver, database: str | None = None) -> dict[str, int]:
    """Migration 4's data step: move a store written with (dataset, record index) identities to
    content-based ones. Idempotent (a second run changes nothing); returns what it changed.

    1. Debates: each keeps its own record's `qid`, explanation and extra fields, points at its
       question's content id, and gets the new debate id (responses and INFORMS edges follow).
       NUMBER-task labels are re-derived with the exact integer rule (an integer gold matched
       within 1e-6 was labelled correct).
    2. Questions: renamed to their content id; nodes that now share one (the same question stored
       under two record indices) become one, their ON and EVALUATED_ON relationships moved over.
    3. Jobs created before the vote option existed keep the rule they ran with
       (`protocol.missing_confidence = "ignore"`), so resuming them does not change the rule.

    It cannot undo an overwrite that happened before (a question whose text was replaced by another
    file's): such debates move with the question they point at now.
    """
    from magdi.store.graph_store import MAG_PROJECTION

    done = {"debates_renamed": 0, "labels_fixed": 0, "questions_renamed": 0, "questions_merged": 0, "jobs_pinned": 0}
    debate_ids = [r["id"] for r in driver.execute_query("MATCH (d:Debate) RETURN d.id AS id ORDER BY id",
                                                        database_=database).records]
    for start in range(0, len(debate_ids), BATCH):
        rows = driver.execute_query("UNWIND $ids AS id MATCH (d:Debate {id: id})" + MAG_PROJECTION,
                                    ids=debate_ids[start:start + BATCH], database_=database).records
        updates, labels = _debate_updates(rows)
        done["debates_renamed"] += sum(u["old"] != u["new"] for u in updates)
        done["labels_fixed"] += len(labels)
        driver.execute_query(
            "UNWIND $rows AS u MATCH (d:Debate {id: u.old}) "
            "SET d.qid = u.qid, d.question_meta_json = u.meta, d.question_id = u.question_id, "
            "    d.team_correct = u.team_correct, d.id = u.new "
            "WITH d, u OPTIONAL MATCH (d)-[:HAS_RESPONSE]->(r:Response) "
            "SET r.id = u.new + '/' + r.agent + '/' + toString(r.round), r.debate_id = u.new "
            "WITH DISTINCT d, u OPTIONAL MATCH (d)-[:HAS_RESPONSE]->(:Response)-[x:INFORMS]->(:Response) "
            "SET x.debate_id = u.new",
            rows=updates, database_=database)
        driver.execute_query("UNWIND $rows AS l MATCH (r:Response {id: l.id}) SET r.correct = l.correct, "
                             "r.label = l.label", rows=labels, database_=database)
    groups: dict[str, list[str]] = {}
    for rec in driver.execute_query("MATCH (q:Question) RETURN q.id AS id, q.dataset AS dataset, q.text AS text, "
                                    "q.gold_answer AS gold, q.options AS options ORDER BY id",
                                    database_=database).records:
        new = ids.question_id(rec["dataset"], rec["text"], rec["gold"], list(rec["options"] or []))
        groups.setdefault(new, []).append(rec["id"])
    merges = [{"keeper": old[0], "others": old[1:]} for old in groups.values() if len(old) > 1]
    for start in range(0, len(merges), BATCH):
        driver.execute_query(
            "UNWIND $rows AS g MATCH (k:Question {id: g.keeper}) UNWIND g.others AS o MATCH (x:Question {id: o}) "
            "CALL (x, k) { MATCH (d:Debate)-[r:ON]->(x) MERGE (d)-[:ON]->(k) DELETE r } "
            "CALL (x, k) { MATCH (e)-[r:EVALUATED_ON]->(x) CREATE (e)-[r2:EVALUATED_ON]->(k) SET r2 = properties(r) "
            "DELETE r } "
            "DETACH DELETE x", rows=merges[start:start + BATCH], database_=database)
        done["questions_merged"] += sum(len(g["others"]) for g in merges[start:start + BATCH])
    renames = [{"old": old[0], "new": new} for new, old in groups.items() if old[0] != new]
    for start in range(0, len(renames), BATCH):
        driver.execute_query("UNWIND $rows AS r MATCH (q:Question {id: r.old}) SET q.id = r.new",
                             rows=renames[start:start + BATCH], database_=database)
    done["questions_renamed"] = len(renames)
    done["jobs_pinned"] = _pin_vote_rule(driver, database)
    if any(done.values()):
        log.info("migration 4: %s", done)
    return done


def _debate_updates(rows: list[neo4j.Record]) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(new identity of each debate, responses whose NUMBER label the exact rule changes)."""
    import json

    from magdi.answers import is_equivalent
    from magdi.mag import ParseStatus, TaskType
    from magdi.store import records

    updates, labels = [], []
    for row in rows:
        if row["q"] is None:
            log.warning("migration 4: debate %s has no question; left as it is", row["d"]["id"])
            continue
        try:
            debate = records.debate_from(row["d"], row["q"], row["rs"], row["es"], row["ps"])
        except (ValueError, LookupError, KeyError) as exc:
            log.warning("migration 4: debate %s cannot be read (%s); left as it is", row["d"].get("id"), exc)
            continue
        q, new_id = debate.question, debate.id
        team_correct = row["d"].get("team_correct")
        if q.task is TaskType.NUMBER and q.gold_answer is not None:
            for r in debate.responses:
                if r.parse_status is ParseStatus.VALID and r.answer is not None and r.correct is not None:
                    correct = is_equivalent(r.answer, q.gold_answer, q.task)
                    if correct != r.correct:
                        labels.append({"id": ids.response_id(new_id, r.agent, r.round), "correct": correct,
                                       "label": 1 if correct else 0})
            if debate.team_answer is not None and team_correct is not None:
                team_correct = is_equivalent(debate.team_answer, q.gold_answer, q.task)
        updates.append({"old": row["d"]["id"], "new": new_id, "qid": q.qid, "question_id": q.id,
                        "meta": json.dumps({"gold_explanation": q.gold_explanation, "extra": q.extra},
                                           ensure_ascii=False),
                        "team_correct": team_correct})
    return updates, labels


def _pin_vote_rule(driver: neo4j.Driver, database: str | None) -> int:
    import json

    from magdi.mag import JobSpec

    pinned = []
    for rec in driver.execute_query("MATCH (j:Job) RETURN j.id AS id, j.spec_json AS spec",
                                    database_=database).records:
        spec = json.loads(rec["spec"])
        protocol = spec.setdefault("protocol", {})
        if protocol.get("name", "reconcile") == "reconcile" and "missing_confidence" not in protocol:
            protocol["missing_confidence"] = "ignore"
            model = JobSpec.model_validate(spec)
            pinned.append({"id": rec["id"], "spec": model.model_dump_json(), "hash": model.config_hash})
    driver.execute_query("UNWIND $rows AS p MATCH (j:Job {id: p.id}) SET j.spec_json = p.spec, "
                         "j.config_hash = p.hash", rows=pinned, database_=database)
    return len(pinned)


def current_version(driver: neo4j.Driver, database: str | None = None) -> int:
    records, _, _ = driver.execute_query(
        "OPTIONAL MATCH (s:SchemaVersion {id: 'magdi'}) RETURN max(s.version) AS v",
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return records[0]["v"] or 0


def _already_exists(exc: ClientError) -> bool:
    return (exc.code or "").endswith("AlreadyExists")


def run_schema_statement(driver: neo4j.Driver, statement: str, database: str | None = None) -> None:
    """One schema statement; a concurrent twin that created the same rule first means it is done."""
    try:
        driver.execute_query(statement, database_=database)
    except ClientError as exc:
        if not _already_exists(exc):
            raise
        log.debug("schema rule already created by another process: %s", exc.code)


def _prepare_lock(driver: neo4j.Driver, database: str | None) -> None:
    """The uniqueness constraint that makes the lock node's MERGE atomic across processes.

    Stores written before the lock existed may hold several version nodes (two processes that
    MERGEd at once); all but the highest version are removed first, the same one by everyone.
    """
    driver.execute_query(
        "MATCH (s:SchemaVersion {id: 'magdi'}) WITH s ORDER BY coalesce(s.version, 0) DESC, elementId(s) "
        "WITH collect(s) AS found WHERE size(found) > 1 UNWIND found[1..] AS extra DETACH DELETE extra",
        database_=database,
    )
    run_schema_statement(driver, _LOCK_CONSTRAINT, database)


def _run_step(driver: neo4j.Driver, step: Step, database: str | None) -> None:
    if isinstance(step, str):
        run_schema_statement(driver, step, database)
    else:
        step(driver, database)


def apply(driver: neo4j.Driver, database: str | None = None, *, target: int | None = None) -> int:
    """Run the migrations newer than the stored version (up to `target`); returns the version in force."""
    target = SCHEMA_VERSION if target is None else target
    stored = current_version(driver, database)
    if stored >= target:
        return stored
    _prepare_lock(driver, database)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    with driver.session(database=database) as session:
        tx = session.begin_transaction(timeout=LOCK_TIMEOUT_S)
        try:
            # the SET takes the node's write lock: other processes queue here until this one commits
            tx.run("MERGE (s:SchemaVersion {id: 'magdi'}) ON CREATE SET s.version = 0 "
                   "SET s.migrating = $holder", holder=holder).consume()
            before = tx.run("MATCH (s:SchemaVersion {id: 'magdi'}) RETURN s.version AS v").single()["v"] or 0
            version = before
            for number, description, steps in MIGRATIONS:
                if number <= version or number > target:
                    continue
                log.info("applying schema migration %d: %s", number, description)
                for step in steps:
                    _run_step(driver, step, database)
                version = number
            tx.run("MATCH (s:SchemaVersion {id: 'magdi'}) SET s.version = $v, s.updated_at = datetime() "
                   "REMOVE s.migrating", v=version).consume()
            tx.commit()
        finally:
            if not tx.closed():
                tx.rollback()
    if version > before:  # a new index serves queries only once populated (seconds on a large store)
        driver.execute_query("CALL db.awaitIndexes($s)", s=INDEX_WAIT_S, database_=database)
    return version
