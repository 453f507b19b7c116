"""Constraints, indexes and schema migrations, applied idempotently at start.

Every statement is `IF NOT EXISTS`, so running them on each start is safe. Migrations are numbered;
the applied version is kept on a single `:SchemaVersion` node so an upgrade runs only what is new.
"""

from __future__ import annotations

import logging

import neo4j

log = logging.getLogger(__name__)

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

# (version, description, statements). Append only; never edit a released migration.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "constraints and indexes", CONSTRAINTS + INDEXES),
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
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
INDEX_WAIT_S = 600  # how long a start waits for new indexes to come online


def current_version(driver: neo4j.Driver, database: str | None = None) -> int:
    records, _, _ = driver.execute_query(
        "OPTIONAL MATCH (s:SchemaVersion {id: 'magdi'}) RETURN s.version AS v",
        database_=database,
        routing_=neo4j.RoutingControl.READ,
    )
    return records[0]["v"] or 0


def apply(driver: neo4j.Driver, database: str | None = None) -> int:
    """Run the migrations newer than the stored version; returns the version now in force."""
    version = current_version(driver, database)
    applied = False
    for number, description, statements in MIGRATIONS:
        if number <= version:
            continue
        log.info("applying schema migration %d: %s", number, description)
        for statement in statements:
            driver.execute_query(statement, database_=database)
        driver.execute_query(
            "MERGE (s:SchemaVersion {id: 'magdi'}) SET s.version = $v, s.updated_at = datetime()",
            v=number,
            database_=database,
        )
        version = number
        applied = True
    if applied:  # a new index serves queries only once populated (seconds on a large store)
        driver.execute_query("CALL db.awaitIndexes($s)", s=INDEX_WAIT_S, database_=database)
    return version
