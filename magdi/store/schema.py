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
    (3, "content-based question ids, collision-free debate ids, shared prompt parts", [
        "CREATE CONSTRAINT prompt_part_id IF NOT EXISTS FOR (n:PromptPart) REQUIRE n.id IS UNIQUE",
        "CREATE INDEX debate_question IF NOT EXISTS FOR (n:Debate) ON (n.question_id)",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


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
    if current_version(driver, database) >= target:
        return current_version(driver, database)
    _prepare_lock(driver, database)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    with driver.session(database=database) as session:
        tx = session.begin_transaction(timeout=LOCK_TIMEOUT_S)
        try:
            # the SET takes the node's write lock: other processes queue here until this one commits
            tx.run("MERGE (s:SchemaVersion {id: 'magdi'}) ON CREATE SET s.version = 0 "
                   "SET s.migrating = $holder", holder=holder).consume()
            version = tx.run("MATCH (s:SchemaVersion {id: 'magdi'}) RETURN s.version AS v").single()["v"] or 0
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
    return version
