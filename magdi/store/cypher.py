"""Read-only Cypher for users (CLI and API).

Four independent guards, any of which refuses a write or an escape:

1. a lexical check on the query with comments and literals blanked out: one statement only, no
   administration or schema command (SHOW, TERMINATE, GRANT, CREATE USER, ...), no `USE`, no
   `LOAD CSV`, no `CALL {} IN TRANSACTIONS`. It exists for clear messages and as a second opinion;
2. the query is planned with EXPLAIN (which executes nothing) and refused unless Neo4j classifies
   it as read-only (`query_type == "r"`), every operator runs on the session's database, no
   operator writes, loads CSV, batches transactions, shows or terminates anything, and every
   procedure in the plan is on a small allow-list of metadata reads. Neo4j itself classifies
   `SHOW SETTINGS` and `TERMINATE TRANSACTIONS` as reads, hence the operator checks;
3. it then runs in a READ access-mode transaction, which the server refuses to let write
   (`Neo.ClientError.Statement.AccessMode`), whatever the plan said;
4. the transaction has a server-side timeout, and the result a row cap and a size cap.

Parameters are values, never Cypher: a query string smuggled in a parameter stays a string.

A leading `EXPLAIN` returns the plan without running anything; a leading `PROFILE` runs the query
(under the same guards: the plan check sees the query without the prefix) and returns its rows
plus the plan with rows and db hits per operator.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import neo4j
from neo4j.exceptions import ClientError, Neo4jError, TransientError

from magdi.errors import UserError
from magdi.store.connection import is_transaction_timeout

# Procedures that only read metadata of the graph; anything else in a plan is refused.
ALLOWED_PROCEDURES = frozenset(
    {
        "db.labels",
        "db.relationshiptypes",
        "db.propertykeys",
        "db.schema.visualization",
        "db.schema.nodetypeproperties",
        "db.schema.reltypeproperties",
        "db.ping",
    }
)
# Plan operators (lower case, before the "@database" suffix) that are refused by prefix.
FORBIDDEN_OPERATORS = (
    "loadcsv", "create", "merge", "delete", "detachdelete", "set", "remove", "foreach", "subqueryforeach",
    "transaction", "show", "terminate", "administrationcommand", "drop", "lock", "insert",
)
# First keywords of administration, schema and server commands.
ADMIN_COMMANDS = frozenset(
    {"show", "terminate", "grant", "deny", "revoke", "drop", "alter", "rename", "start", "stop", "enable",
     "deallocate", "reallocate", "dryrun", "create", "use"}
)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")
# Neo4j 5 overflows its stack on a few hundred nested brackets, chained NOTs or accessors
# (`m.a.a...`, `m[0][0]...`) or a long operator chain, and then never answers the connection: the
# client waits for its read timeout (the server's `connection.recv_timeout_seconds` hint, 120 s).
# Real queries stay far below these bounds; long value lists belong in parameters.
MAX_NESTING = 32  # brackets and CASE ... END
MAX_CHAIN = 32  # consecutive NOTs, or `.key` / `[index]` accessors
MAX_OPERATORS = 64  # binary operators in one run (`'a' + 'a' + ...` overflows at 250)
MAX_TOKENS = 2000
_OPERATORS = frozenset({"+", "-", "*", "/", "%", "^", "and", "or", "xor"})
_SEPARATORS = frozenset({",", "(", ")", "[", "]", "{", "}", "|", "return", "with", "where", "when", "then", "else",
                         "case", "end", "as", "match", "unwind", "order", "by", "call", "yield", "union", "optional"})
MAX_PARAMETER_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)


class CypherRejected(UserError):
    """The query is not allowed (write, LOAD CSV, procedure, admin) or failed; message says why."""


class CypherTimeout(CypherRejected):
    """The query ran past its timeout and was terminated by the server."""


@dataclass
class CypherResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False
    notifications: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None  # EXPLAIN: the plan; PROFILE: the plan with rows and db hits


_MODE = re.compile(r"\A(?:\s|//[^\n]*(?:\n|\Z)|/\*.*?\*/)*(EXPLAIN|PROFILE)\b", re.IGNORECASE | re.DOTALL)


def split_mode(query: str) -> tuple[str | None, str]:
    """("explain" | "profile" | None, the query without that prefix); leading comments are skipped."""
    m = _MODE.match(query)
    if m is None:
        return None, query
    inner = query[m.end():]
    if _MODE.match(inner):
        raise CypherRejected("one EXPLAIN or PROFILE prefix at most")
    return m.group(1).lower(), inner


# -- guard 1: lexical ----------------------------------------------------------------------------
def skeleton(query: str) -> str:
    """The query with comments removed, string literals as '' and quoted identifiers as `_`.

    Keyword checks on the skeleton cannot be fooled by comments (`cRe/* */ATE` is two tokens
    to Neo4j as well), nor tripped by a keyword inside a string or a backticked name.
    """
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if query.startswith("//", i):
            end = query.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif c in "'\"":
            j = i + 1
            while j < n and query[j] != c:
                j += 2 if query[j] == "\\" else 1
            i = j + 1
            out.append("''")
        elif c == "`":
            j = query.find("`", i + 1)
            while j >= 0 and query.startswith("``", j):  # `` escapes a backtick inside a name
                j = query.find("`", j + 2)
            i = n if j < 0 else j + 1
            out.append("_")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def check_text(query: str) -> None:
    """Raise CypherRejected for text that is plainly not a single read query."""
    _encodable(query, "query")
    bones = skeleton(query)
    tokens = [t.lower() for t in _TOKEN.findall(bones)]
    if not tokens:
        raise CypherRejected("empty query")
    if len(tokens) > MAX_TOKENS:
        raise CypherRejected(f"query too long: more than {MAX_TOKENS} tokens (pass long lists as parameters)")
    if _nesting(tokens) > MAX_NESTING:
        raise CypherRejected(f"brackets or CASE nested deeper than {MAX_NESTING} levels")
    if _longest_chain(tokens) > MAX_CHAIN:
        raise CypherRejected(f"more than {MAX_CHAIN} chained NOTs or property/index accessors")
    if _longest_operator_run(tokens) > MAX_OPERATORS:
        raise CypherRejected(f"more than {MAX_OPERATORS} operators in one expression: use lists and reduce()")
    if ";" in tokens[:-1] or (tokens[-1] == ";" and len(tokens) == 1):
        raise CypherRejected("one statement per query: remove the ';'")
    first = _first_keyword(tokens)
    if first in ADMIN_COMMANDS:
        what = "USE is not allowed (the database is fixed)" if first == "use" else f"{first.upper()} is not allowed"
        raise CypherRejected(f"{what}: only read queries (MATCH ... RETURN) are accepted")
    for a, b in zip(tokens, tokens[1:], strict=False):
        if (a, b) == ("load", "csv"):
            raise CypherRejected("LOAD CSV is not allowed")
        if (a, b) == ("in", "transactions"):
            raise CypherRejected("CALL { ... } IN TRANSACTIONS is not allowed")


def _nesting(tokens: list[str]) -> int:
    depth = deepest = 0
    for t in tokens:
        if t in ("(", "[", "{", "case"):
            depth += 1
            deepest = max(deepest, depth)
        elif t in (")", "]", "}", "end"):
            depth -= 1
    return deepest


def _longest_chain(tokens: list[str]) -> int:
    """Longest run of `NOT`s, or of `.key` / `[x]` accessors (`]` directly followed by `[` or `.`)."""
    longest = nots = accessors = 0
    for prev, t in zip(["", *tokens], tokens, strict=False):
        nots = nots + 1 if t == "not" else 0
        if (t == "." and prev not in (".", "")) or (t == "[" and prev == "]"):
            accessors += 1
        elif t not in (".", "[", "]") and not (prev == "." or prev == "["):
            accessors = 0
        longest = max(longest, nots, accessors)
    return longest


def _longest_operator_run(tokens: list[str]) -> int:
    longest = run = 0
    for t in tokens:
        if t in _OPERATORS:
            run += 1
            longest = max(longest, run)
        elif t in _SEPARATORS:
            run = 0
    return longest


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CypherRejected(f"{where}: not valid Unicode (a lone surrogate)") from None


def check_parameters(value: Any, where: str = "parameters", depth: int = 0) -> None:
    """Parameters the driver can send: JSON values, 64-bit integers, valid Unicode, bounded nesting."""
    if depth > MAX_PARAMETER_DEPTH:
        raise CypherRejected(f"{where}: nested deeper than {MAX_PARAMETER_DEPTH} levels")
    if isinstance(value, dict):
        for key, sub in value.items():
            if not isinstance(key, str):
                raise CypherRejected(f"{where}: keys must be strings")
            _encodable(key, where)
            check_parameters(sub, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, sub in enumerate(value):
            check_parameters(sub, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str):
        _encodable(value, where)
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        raise CypherRejected(f"{where}: integer out of the 64-bit range")


def _first_keyword(tokens: list[str]) -> str:
    """The first clause keyword, after an optional `CYPHER option=value ...` prefix and EXPLAIN/PROFILE."""
    i = 0
    if tokens and tokens[0] == "cypher":
        i = 1
        while i < len(tokens) and (tokens[i][0].isdigit() or tokens[i] in "=." or (
                i + 1 < len(tokens) and tokens[i + 1] == "=") or tokens[i - 1] == "="):
            i += 1
    while i < len(tokens) and tokens[i] in ("explain", "profile"):
        i += 1
    return tokens[i] if i < len(tokens) else ""


# -- guard 2: the plan ---------------------------------------------------------------------------
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


def _procedure_name(args: dict[str, Any]) -> str:
    """`db.labels() :: (label :: STRING)` -> `db.labels` (Neo4j 5 puts it in Details; 4.x in Signature)."""
    text = str(args.get("Details") or args.get("Signature") or "")
    return text.split("(")[0].strip().strip("`").lower()


def check_plan(session: neo4j.Session, query: str, parameters: dict[str, Any], *,
               timeout_s: float = 10.0) -> dict[str, Any] | None:
    """Raise CypherRejected unless EXPLAIN shows a pure read with allowed operators only; returns the plan."""
    try:
        summary = session.run(neo4j.Query(f"EXPLAIN {query}", timeout=timeout_s), parameters).consume()
    except ClientError as exc:
        raise CypherRejected(f"query rejected by Neo4j: {_message(exc)}") from None
    if summary.query_type != "r":
        raise CypherRejected(f"only read queries are allowed (this one is of type {summary.query_type!r})")
    database = (summary.database or "").lower()
    for op in _walk(summary.plan):
        kind, _, on = str(op.get("operatorType", "")).lower().partition("@")
        if database and on and on != database:
            raise CypherRejected(f"queries run on database {database!r} only (the plan touches {on!r})")
        if kind.startswith(FORBIDDEN_OPERATORS):
            raise CypherRejected(f"operator {op.get('operatorType')} is not allowed in a read-only query")
        if "procedurecall" in kind:
            name = _procedure_name(op.get("args") or {})
            if name not in ALLOWED_PROCEDURES:
                allowed = ", ".join(sorted(ALLOWED_PROCEDURES))
                raise CypherRejected(f"procedure {name!r} is not allowed (allowed: {allowed})")
    return summary.plan


def _message(exc: Neo4jError) -> str:
    text = (exc.message or str(exc)).strip()
    return text.split("\n")[0][:500]


# -- results -------------------------------------------------------------------------------------
def to_json(value: Any) -> Any:
    """Nodes, relationships, paths, temporal and spatial values, bytes and NaN as plain JSON."""
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
    if isinstance(value, neo4j.spatial.Point):
        return {"_type": "point", "srid": value.srid, "coordinates": list(value)}
    if isinstance(value, bytes | bytearray):
        return {"_type": "bytes", "base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if hasattr(value, "iso_format"):  # temporal values; before tuples: Duration is a tuple
        return value.iso_format()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def run_readonly(
    driver: neo4j.Driver,
    query: str,
    parameters: dict[str, Any] | None = None,
    *,
    database: str | None = None,
    timeout_s: float = 10.0,
    max_rows: int = 1000,
    max_bytes: int | None = None,
) -> CypherResult:
    """Run one user query under all four guards; raises CypherRejected (CypherTimeout) with the reason.

    `max_bytes` caps the JSON size of the returned rows (the result is truncated there, like at
    `max_rows`); driver errors such as ServiceUnavailable propagate unchanged.
    """
    params = dict(parameters or {})
    check_text(query)
    check_parameters(params)
    mode, inner = split_mode(query)
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session:
        plan = check_plan(session, inner, params, timeout_s=timeout_s)
        if mode == "explain":
            return CypherResult(columns=[], rows=[], plan=to_json(plan))

        def work(tx: neo4j.ManagedTransaction) -> CypherResult:
            try:
                return collect(tx)
            except TransientError as exc:  # the driver would retry it for 30 s; it fails the same way each time
                if exc.code and "MemoryPoolOutOfMemoryError" in exc.code:
                    raise CypherRejected("the query needs more memory than the server allows one transaction "
                                         "(db.memory.transaction.max); return less, or aggregate") from None
                raise

        def collect(tx: neo4j.ManagedTransaction) -> CypherResult:
            result = tx.run(f"PROFILE {inner}" if mode == "profile" else inner, params)
            columns = list(result.keys())
            rows: list[list[Any]] = []
            size, truncated = 0, False
            for record in result:
                row = [to_json(v) for v in record.values()]
                if max_bytes is not None:
                    size += len(json.dumps(row, default=str))
                if len(rows) >= max_rows or (max_bytes is not None and size > max_bytes):
                    truncated = True
                    break
                rows.append(row)
            profile = to_json(result.consume().profile) if mode == "profile" else None
            return CypherResult(columns=columns, rows=rows, truncated=truncated, plan=profile)

        try:
            return session.execute_read(neo4j.unit_of_work(timeout=timeout_s)(work))
        except (ClientError, TransientError) as exc:
            if is_transaction_timeout(exc):
                raise CypherTimeout(f"query exceeded the {timeout_s:g} s timeout") from None
            raise CypherRejected(f"query failed: {_message(exc)}") from None
        except Neo4jError as exc:
            raise CypherRejected(f"query failed: {_message(exc)}") from None
