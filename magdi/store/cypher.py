"""Read-only Cypher for users (CLI and API).

Three independent guards, any of which refuses a write: (1) the query is planned with EXPLAIN and
refused unless Neo4j classifies it as read-only, with no LOAD CSV and only allow-listed procedures
in the plan; (2) it then runs in a READ access-mode transaction, which the server itself refuses to
let write; (3) the transaction has a timeout and the result a row cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import neo4j
from neo4j.exceptions import ClientError, Neo4jError

# Procedures that only read metadata; anything else in a plan is refused.
ALLOWED_PROCEDURES = frozenset(
    {
        "db.labels",
        "db.relationshiptypes",
        "db.propertykeys",
        "db.schema.visualization",
        "db.schema.nodetypeproperties",
        "db.schema.reltypeproperties",
        "dbms.components",
    }
)
FORBIDDEN_OPERATORS = ("loadcsv", "create", "merge", "delete", "setproperty", "setlabels", "removelabels",
                       "setnodeproperty", "setrelationshipproperty", "foreach", "transactionforeach",
                       "transactionapply")


class CypherRejected(ValueError):
    """The query is not allowed (write, LOAD CSV, procedure, admin) or failed; message says why."""


@dataclass
class CypherResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False
    notifications: list[str] = field(default_factory=list)


def _walk(plan: Any) -> list[dict[str, Any]]:
    if plan is None:
        return []
    node = plan if isinstance(plan, dict) else {
        "operatorType": getattr(plan, "operator_type", ""),
        "args": getattr(plan, "arguments", {}),
        "children": getattr(plan, "children", []),
    }
    out = [node]
    for child in node.get("children", []) or []:
        out.extend(_walk(child))
    return out


def check_plan(session: neo4j.Session, query: str, parameters: dict[str, Any]) -> None:
    """Raise CypherRejected unless EXPLAIN shows a pure read with allowed operators only."""
    try:
        summary = session.run(f"EXPLAIN {query}", parameters).consume()
    except Neo4jError as exc:
        raise CypherRejected(f"query rejected by Neo4j: {exc.message or exc}") from None
    if summary.query_type != "r":
        raise CypherRejected(f"only read queries are allowed (this one is of type {summary.query_type!r})")
    for op in _walk(summary.plan):
        kind = str(op.get("operatorType", "")).split("@")[0].lower()
        if kind.startswith(FORBIDDEN_OPERATORS):
            raise CypherRejected(f"operator {op.get('operatorType')} is not allowed")
        if "procedurecall" in kind:
            signature = str((op.get("args") or {}).get("Signature", "")).lower()
            name = signature.split("(")[0].strip()
            if name not in ALLOWED_PROCEDURES:
                raise CypherRejected(f"procedure {name or signature!r} is not allowed")


def to_json(value: Any) -> Any:
    """Nodes, relationships, paths and temporal values as plain JSON."""
    if isinstance(value, neo4j.graph.Node):
        return {"_id": value.element_id, "_labels": sorted(value.labels), **{k: to_json(v) for k, v in value.items()}}
    if isinstance(value, neo4j.graph.Relationship):
        return {
            "_id": value.element_id,
            "_type": value.type,
            "_start": value.start_node.element_id if value.start_node else None,
            "_end": value.end_node.element_id if value.end_node else None,
            **{k: to_json(v) for k, v in value.items()},
        }
    if isinstance(value, neo4j.graph.Path):
        return {"nodes": [to_json(n) for n in value.nodes], "relationships": [to_json(r) for r in value.relationships]}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if hasattr(value, "iso_format"):
        return value.iso_format()
    return value


def run_readonly(
    driver: neo4j.Driver,
    query: str,
    parameters: dict[str, Any] | None = None,
    *,
    database: str | None = None,
    timeout_s: float = 10.0,
    max_rows: int = 1000,
) -> CypherResult:
    params = dict(parameters or {})
    if not query.strip():
        raise CypherRejected("empty query")
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        check_plan(session, query, params)

        def work(tx: neo4j.ManagedTransaction) -> CypherResult:
            result = tx.run(query, params)
            columns = list(result.keys())
            rows: list[list[Any]] = []
            truncated = False
            for record in result:
                if len(rows) >= max_rows:
                    truncated = True
                    break
                rows.append([to_json(v) for v in record.values()])
            return CypherResult(columns=columns, rows=rows, truncated=truncated)

        try:
            return session.execute_read(neo4j.unit_of_work(timeout=timeout_s)(work))
        except ClientError as exc:
            code = exc.code or ""
            if "TransactionTimedOut" in code or "Terminated" in code:
                raise CypherRejected(f"query exceeded the {timeout_s:g} s timeout") from None
            raise CypherRejected(f"query failed: {exc.message or exc}") from None
        except Neo4jError as exc:
            raise CypherRejected(f"query failed: {exc.message or exc}") from None
