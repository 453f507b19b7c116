"""Reading and writing MAGs in Neo4j.

Writes go through a handful of `UNWIND $rows` queries per transaction, whatever the number of nodes,
and MERGE on deterministic ids, so a retried or repeated write never duplicates anything. Reads
fetch a whole MAG (or a page of MAGs) in one query. Every transaction function has a timeout and
is run with the driver's managed retries for transient errors.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import neo4j

from magdi import ids
from magdi.errors import UserError
from magdi.mag import Debate, Question
from magdi.store import records, schema

log = logging.getLogger(__name__)
T = TypeVar("T")

# -- Cypher ------------------------------------------------------------------------------------
# A question is created once and never changed: a row whose id exists with other content comes back
# as a conflict (the whole transaction is then rolled back). MERGE on the unique id locks it, so the
# comparison sees what a concurrent writer committed.
_MERGE_QUESTIONS = """
UNWIND $rows AS q
MERGE (n:Question {id: q.id}) ON CREATE SET n += q
WITH n, q WHERE n.text <> q.text OR n.task <> q.task OR coalesce(n.options, []) <> coalesce(q.options, [])
             OR coalesce(n.gold_answer, '') <> coalesce(q.gold_answer, '')
             OR (n.gold_answer IS NULL) <> (q.gold_answer IS NULL)
RETURN n.id AS id, n.dataset AS dataset, n.text AS text, n.task AS task, n.gold_answer AS gold,
       n.options AS options, q.text AS new_text, q.task AS new_task, q.gold_answer AS new_gold,
       q.options AS new_options
"""
# ON CREATE only: every MAG write touches the panel's Agent nodes, and an unconditional SET would
# make concurrent writers queue on their locks.
_MERGE_AGENTS = "UNWIND $rows AS a MERGE (n:Agent {id: a.id}) ON CREATE SET n += a"
# A stored debate stays on its question and job: anything else is a conflict, not an update.
_DEBATE_CONFLICTS = """
UNWIND $rows AS d
MATCH (n:Debate {id: d.id})
WHERE n.question_id <> d.question_id OR coalesce(n.job_id, '') <> coalesce(d.job_id, '')
RETURN n.id AS id, n.question_id AS question_id, n.job_id AS job_id, d.question_id AS new_question_id,
       d.job_id AS new_job_id
"""
# created_at is the first write's: a resumed job or a re-import keeps it.
_MERGE_DEBATES = """
UNWIND $rows AS d
MERGE (n:Debate {id: d.props.id}) ON CREATE SET n.created_at = d.created_at
SET n += d.props
WITH n, d
MATCH (q:Question {id: d.props.question_id})
MERGE (n)-[:ON]->(q)
WITH n, d
OPTIONAL MATCH (j:Job {id: d.props.job_id})
FOREACH (_ IN CASE WHEN j IS NULL THEN [] ELSE [1] END | MERGE (n)-[:PART_OF]->(j))
"""
_MERGE_PROMPT_PARTS = """
UNWIND $rows AS p
MERGE (n:PromptPart {id: p.id}) ON CREATE SET n.role = p.role, n.content = p.content
WITH n, p WHERE n.role <> p.role OR n.content <> p.content
RETURN n.id AS id
"""
_DROP_STALE = """
UNWIND $rows AS d
MATCH (:Debate {id: d.id})-[:HAS_RESPONSE]->(r:Response)
WHERE NOT r.id IN d.response_ids
DETACH DELETE r
"""
_DROP_STALE_EDGES = """
UNWIND $rows AS d
MATCH (:Debate {id: d.id})-[:HAS_RESPONSE]->(s:Response)-[x:INFORMS]->(t:Response)
WHERE NOT (s.id + '>' + t.id) IN d.edge_keys
DELETE x
"""
_MERGE_RESPONSES = """
UNWIND $rows AS r
MATCH (d:Debate {id: r.debate_id})
MATCH (a:Agent {id: r.agent_id})
MERGE (n:Response {id: r.id})
SET n += r.props
MERGE (d)-[:HAS_RESPONSE]->(n)
MERGE (n)-[:BY]->(a)
"""
_MERGE_EDGES = """
UNWIND $rows AS e
MATCH (s:Response {id: e.src})
MATCH (t:Response {id: e.dst})
MERGE (s)-[x:INFORMS]->(t)
SET x.same_agent = e.same_agent, x.debate_id = e.debate_id
"""
MAG_PROJECTION = """
RETURN d {.*} AS d,
       [(d)-[:ON]->(q:Question) | q {.*}][0] AS q,
       [(d)-[:HAS_RESPONSE]->(r:Response) | r {.*}] AS rs,
       [(d)-[:HAS_RESPONSE]->(s:Response)-[:INFORMS]->(t:Response) | [s.agent, s.round, t.agent, t.round]] AS es,
       COLLECT { MATCH (d)-[:HAS_RESPONSE]->(r:Response) UNWIND coalesce(r.prompt_parts, []) AS pid
                 WITH DISTINCT pid MATCH (p:PromptPart {id: pid}) RETURN p {.*} } AS ps
"""


class InvalidCursor(UserError):
    """A page cursor that this store did not hand out (or for another listing)."""


class WriteConflict(UserError):
    """A write would change what a stored node means (a question's text or gold, a debate's
    question); nothing of that transaction was written."""


def _question_conflict(row: dict[str, Any], where: str, state: str = "is stored with other content") -> str:
    changes = [f"{name} {row[old]!r} -> {row[new]!r}" for name, old, new in
               (("text", "text", "new_text"), ("gold answer", "gold", "new_gold"), ("task", "task", "new_task"),
                ("options", "options", "new_options")) if row[old] != row[new]]
    return (f"question {row['id']} of dataset {row['dataset']!r} {state} ({'; '.join(changes)})"
            f"{where}; a stored question is never changed: fix the file or use another dataset name")


def _batch_conflicts(batch: Iterable[tuple[Question, str]]) -> list[str]:
    """Questions of one batch that share an id (equal up to whitespace) but differ in content."""
    seen: dict[str, tuple[Question, str]] = {}
    problems = []
    for q, where in batch:
        first = seen.setdefault(q.id, (q, where))
        fq, fwhere = first
        if (fq.text, fq.gold_answer, fq.task, fq.options) != (q.text, q.gold_answer, q.task, q.options):
            row = {"id": q.id, "dataset": q.dataset, "text": fq.text, "new_text": q.text, "gold": fq.gold_answer,
                   "new_gold": q.gold_answer, "task": fq.task.value, "new_task": q.task.value,
                   "options": fq.options, "new_options": q.options}
            problems.append(_question_conflict(row, f" in {fwhere}, differently in {where}",
                                               state="appears with two contents"))
    return problems


# Filters a caller may pass to list/stream; each maps to one WHERE clause on `d`.
_FILTERS: dict[str, str] = {
    "dataset": "d.dataset = $dataset",
    "job_id": "d.job_id = $job_id",
    "status": "d.status = $status",
    "consensus": "d.consensus = $consensus",
    "team_correct": "d.team_correct = $team_correct",
    "agent": "$agent IN d.agents",
    "rounds_used": "d.rounds_used = $rounds_used",
    "protocol": "d.protocol = $protocol",
}


# Equality filters with a composite (property, id) index: a page filtered on one is read in index order.
_INDEX_ORDERED = ("job_id", "dataset")


@dataclass
class DebateFilter:
    """Filters for listing and streaming debates; None means "any"."""

    dataset: str | None = None
    job_id: str | None = None
    status: str | None = None
    consensus: bool | None = None
    team_correct: bool | None = None
    agent: str | None = None
    rounds_used: int | None = None
    protocol: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        params = {k: v for k, v in asdict(self).items() if v is not None}
        clauses = [_FILTERS[k] for k in params]
        return " AND ".join(clauses), params


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass
class Stats:
    debates: int = 0
    complete: int = 0
    consensus_rate: float | None = None
    mean_rounds: float | None = None
    team_accuracy: float | None = None
    majority_accuracy: float | None = None
    responses: int = 0
    invalid_responses: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    tokens_per_debate: float | None = None
    agents: list[dict[str, Any]] = field(default_factory=list)


def ratio(part: float, whole: int) -> float | None:
    """part / whole, or None when nothing was counted (never NaN: the figure is unknown, not 0)."""
    return part / whole if whole else None


def encode_cursor(*key: str) -> str:
    """An opaque page token holding the sort key of the last row served (keyset pagination)."""
    return base64.urlsafe_b64encode(json.dumps({"after": key[0] if len(key) == 1 else list(key)}).encode()).decode()


def decode_cursor(cursor: str, parts: int = 1) -> tuple[str, ...]:
    """The `parts`-string sort key in `cursor`; ValueError on anything that is not a cursor we issued."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"]
    except Exception as exc:  # binascii, json, key and type errors all mean "not ours"
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}") from exc
    key = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list) else ()
    if len(key) != parts or not all(isinstance(k, str) for k in key):
        raise InvalidCursor(f"invalid cursor {cursor[:40]!r}")
    return key


def page_query(flt: DebateFilter, after: str | None, limit: int, projection: str) -> tuple[str, dict[str, Any]]:
    """The Cypher and parameters of one keyset page of debates in id order, after the id `after`.

    Cost must not grow with the store: the first page binds `d.id > ''` rather than dropping the
    clause (without it the planner scans and sorts every Debate), and a job or dataset filter sorts
    by (that property, id), which the composite indexes of schema migration 3 hold in that order, so
    the page is an index seek that stops after `limit` rows instead of reading every match.
    """
    where, params = flt.where()
    key = next((k for k in _INDEX_ORDERED if k in params), None)
    # SEEK: left alone, the planner sometimes reads the whole composite index in order and filters
    # it (or takes the single-property index and sorts), plans whose cost grows with the store
    hint, lead = (f" USING INDEX SEEK d:Debate({key}, id)", f"d.{key}, ") if key else ("", "")
    query = (
        f"MATCH (d:Debate){hint} WHERE " + " AND ".join([*([where] if where else []), "d.id > $after"])
        + f" WITH d ORDER BY {lead}d.id LIMIT $limit " + projection
    )
    return query, {**params, "after": after or "", "limit": limit}


# The debate list's projection, on the page's debates only (at most `window`, collected in the page's
# order): one ON hop each for the question text, then the matches of `$needle` among them.
_LIST_PROJECTION = """
WITH collect(d {.*, question_text: [(d)-[:ON]->(q:Question) | q.text][0]}) AS page
RETURN [s IN page WHERE $needle IS NULL OR toLower(coalesce(s.question_text, '')) CONTAINS $needle
        OR toLower(s.id) CONTAINS $needle OR toLower(coalesce(s.qid, '')) CONTAINS $needle][..$take] AS hits,
       size(page) AS scanned, page[-1].id AS last
"""


def list_query(flt: DebateFilter, after: str | None, *, window: int, needle: str | None,
               take: int) -> tuple[str, dict[str, Any]]:
    """Cypher + parameters: the first `take` matches of `needle` (lower case; None = all) among the
    `window` debates after `after`, how many were read, and the last id read."""
    query, params = page_query(flt, after, window, _LIST_PROJECTION)
    return query, {**params, "needle": needle, "take": take}


class GraphStore:
    """The MAG store on one Neo4j database. Thread-safe: a session per call, one shared driver."""

    def __init__(self, driver: neo4j.Driver, *, database: str | None = None, query_timeout_s: float = 30.0):
        self.driver = driver
        self.database = database
        self.timeout = query_timeout_s

    # -- plumbing --------------------------------------------------------------------------
    def _run(self, fn: Callable[..., T], *args: Any, write: bool = False, timeout: float | None = None) -> T:
        work = neo4j.unit_of_work(timeout=timeout or self.timeout)(fn)
        with self.driver.session(database=self.database) as session:
            if write:
                return session.execute_write(work, *args)
            return session.execute_read(work, *args)

    def rows(self, query: str, *, write: bool = False, **params: Any) -> list[dict[str, Any]]:
        """One query in a managed transaction (timeout, retries); its records as dicts."""
        return self._run(lambda t: [r.data() for r in t.run(query, params)], write=write)

    def ensure_schema(self) -> int:
        return schema.apply(self.driver, self.database)

    # -- writes ----------------------------------------------------------------------------
    def write_debates(self, debates: Iterable[Debate], *, replace: bool = True) -> int:
        """Write MAGs in ONE transaction (a few UNWIND queries whatever their size).

        `replace=True` makes the stored MAG equal to the given one (stale responses and edges of
        these debates are removed); `replace=False` only adds/updates. Two MAGs with one id in the
        batch are refused (ValueError): they would be merged into one. A question or debate that
        would change meaning raises WriteConflict, and nothing is written.
        """
        batch = list(debates)
        first: dict[str, int] = {}
        for i, d in enumerate(batch):
            j = first.setdefault(d.id, i)
            if j != i:
                raise UserError(f"MAGs {j} and {i} of this batch are the same debate {d.id} (job {d.job_id!r}, "
                                 f"dataset {d.question.dataset!r}, question {d.question.qid!r}); writing both "
                                 f"would merge them")
        self._write([(d, None) for d in batch], replace=replace)
        return len(batch)

    def write_turns(self, items: Iterable[tuple[Debate, Collection[tuple[str, int]]]]) -> int:
        """Write debate headers plus only the named (agent, round) responses and the edges into them.

        A generator appends a turn at a time; rewriting every earlier response on each turn would
        make a debate's writes quadratic in its length. Edges always point into the later round,
        so a turn's incoming edges are written with it.
        """
        batch = [(d, set(keys)) for d, keys in items]
        self._write(batch, replace=False)
        return len(batch)

    def check_questions(self, questions: Iterable[Question], where: str = "") -> None:
        """Raise WriteConflict if storing these questions would change a stored one (a read; writes
        check again inside their own transaction)."""
        items = list(questions)
        problems = _batch_conflicts((q, f"{where}record {q.qid}") for q in items)
        rows = list({q.id: records.question_row(q) for q in items}.values())
        found = self.rows("UNWIND $rows AS q MATCH (n:Question {id: q.id}) "
                          "RETURN n {.id, .dataset, .text, .task, .gold_answer, .options} AS n, q", rows=rows)
        for rec in found:
            n, q = rec["n"], rec["q"]
            row = {"id": n["id"], "dataset": n["dataset"], "text": n["text"], "new_text": q["text"],
                   "gold": n.get("gold_answer"), "new_gold": q["gold_answer"], "task": n["task"], "new_task": q["task"],
                   "options": list(n.get("options") or []), "new_options": q["options"]}
            if any(row[k] != row[f"new_{k}"] for k in ("text", "gold", "task", "options")):
                problems.append(_question_conflict(row, f" (given by {where}record {q['qid']})"))
        if problems:
            raise WriteConflict("; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5
                                                           else ""))

    def _write(self, batch: list[tuple[Debate, set[tuple[str, int]] | None]], *, replace: bool) -> None:
        if not batch:
            return
        debate_ids = [d.id for d, _ in batch]  # computed once: an imported MAG's id hashes its content
        conflicts = _batch_conflicts((d.question, f"debate {i}") for (d, _), i in zip(batch, debate_ids, strict=True))
        if conflicts:
            raise WriteConflict("; ".join(conflicts[:5]))
        questions = {d.question.id: records.question_row(d.question) for d, _ in batch}
        agents = {a.id: records.agent_row(a) for d, _ in batch for a in d.panel}
        debate_rows = [{"props": records.debate_row(d, i), "created_at": d.created_at}
                       for (d, _), i in zip(batch, debate_ids, strict=True)]
        written = [(d, i, [r for r in d.responses if keys is None or (r.agent, r.round) in keys])
                   for (d, keys), i in zip(batch, debate_ids, strict=True)]
        response_rows = [records.response_row(d, i, r) for d, i, rs in written for r in rs]
        parts = {p["id"]: p for _, _, rs in written for r in rs for p in records.prompt_parts(r)}
        edge_rows = [
            records.edge_row(i, e) for (d, keys), i in zip(batch, debate_ids, strict=True) for e in d.edges
            if keys is None or (e.target_agent, e.target_round) in keys
        ]
        stale = [
            {
                "id": i,
                "response_ids": [ids.response_id(i, r.agent, r.round) for r in d.responses],
                "edge_keys": [f"{row['src']}>{row['dst']}" for row in (records.edge_row(i, e) for e in d.edges)],
            }
            for (d, _), i in zip(batch, debate_ids, strict=True)
        ]

        def tx(t: neo4j.ManagedTransaction) -> None:
            clashes = [r.data() for r in t.run(_MERGE_QUESTIONS, rows=list(questions.values()))]
            if clashes:
                raise WriteConflict("; ".join(_question_conflict(c, "") for c in clashes[:5]))
            moved = [r.data() for r in t.run(_DEBATE_CONFLICTS, rows=[r["props"] for r in debate_rows])]
            if moved:
                raise WriteConflict("; ".join(
                    f"debate {m['id']} is stored on question {m['question_id']} of job {m['job_id']!r}; this write "
                    f"puts it on question {m['new_question_id']} of job {m['new_job_id']!r}" for m in moved[:5]))
            t.run(_MERGE_AGENTS, rows=list(agents.values())).consume()
            t.run(_MERGE_DEBATES, rows=debate_rows).consume()
            if parts and t.run(_MERGE_PROMPT_PARTS, rows=list(parts.values())).peek() is not None:
                raise WriteConflict("a prompt part id already holds another message (hash collision)")
            if replace:
                t.run(_DROP_STALE, rows=stale).consume()
                t.run(_DROP_STALE_EDGES, rows=stale).consume()
            if response_rows:
                t.run(_MERGE_RESPONSES, rows=response_rows).consume()
            if edge_rows:
                t.run(_MERGE_EDGES, rows=edge_rows).consume()

        self._run(tx, write=True)

    def write_debate(self, debate: Debate, *, replace: bool = True) -> None:
        self.write_debates([debate], replace=replace)

    def delete_debate(self, debate_id: str) -> bool:
        """Delete a MAG and its responses; the question goes too when nothing else (another debate, an
        evaluation run) points at it. Prompt parts are shared and content-addressed: they stay."""

        def tx(t: neo4j.ManagedTransaction) -> bool:
            rec = t.run(
                """
                MATCH (d:Debate {id: $id})
                OPTIONAL MATCH (d)-[:ON]->(q:Question)
                OPTIONAL MATCH (d)-[:HAS_RESPONSE]->(r:Response)
                DETACH DELETE r
                WITH DISTINCT d, q
                DETACH DELETE d
                WITH q WHERE q IS NOT NULL AND NOT (q)<--()
                DETACH DELETE q
                RETURN count(*) AS n
                """,
                id=debate_id,
            ).consume()
            return rec.counters.nodes_deleted > 0

        return self._run(tx, write=True)

    # -- reads -----------------------------------------------------------------------------
    def get_debate(self, debate_id: str) -> Debate | None:
        def tx(t: neo4j.ManagedTransaction) -> list[Any] | None:
            rec = t.run("MATCH (d:Debate {id: $id})" + MAG_PROJECTION, id=debate_id).single()
            return rec.values() if rec else None

        row = self._run(tx)
        return records.debate_from(*row) if row else None

    def debate_ids(self, flt: DebateFilter | None = None) -> list[str]:
        where, params = (flt or DebateFilter()).where()
        query = "MATCH (d:Debate)" + (f" WHERE {where}" if where else "") + " RETURN d.id AS id ORDER BY id"

        def tx(t: neo4j.ManagedTransaction) -> list[str]:
            return [r["id"] for r in t.run(query, **params)]

        return self._run(tx)

    def _page(self, flt: DebateFilter, after: str | None, limit: int, projection: str) -> list[list[Any]]:
        query, params = page_query(flt, after, limit, projection)
        # values(), not data(): data() copies every nested map and list once more in Python
        return self._run(lambda t: [r.values() for r in t.run(query, params)])

    def list_debates(self, flt: DebateFilter | None = None, *, limit: int = 50, cursor: str | None = None,
                     search: str | None = None, search_window: int = 2000) -> Page:
        """Debate summaries (node properties and `question_text`, no responses), keyset-paginated by id;
        InvalidCursor for a cursor we did not issue.

        `search` keeps the debates whose question text, debate id or record id contains it, ignoring
        case. No index serves a substring of free text together with the list's keyset order (a
        Neo4j TEXT index finds matching questions, but a common word matches them all and the page
        would sort every debate), so a search reads at most `search_window` debates past the cursor,
        in the list's own index order, and returns the matches among them: each request costs the
        same whatever the store holds. When the window is used up before the page is full,
        `next_cursor` continues the scan where it stopped, so a search page may hold fewer than
        `limit` items (even none) and still have a next page.
        """
        after = decode_cursor(cursor)[0] if cursor else None
        needle = search.strip().lower() if search and search.strip() else None
        window = search_window if needle else limit + 1
        query, params = list_query(flt or DebateFilter(), after, window=window, needle=needle, take=limit + 1)
        row = self.rows(query, **params)[0]
        hits: list[dict[str, Any]] = row["hits"]
        items = hits[:limit]
        if len(hits) > limit:
            next_cursor = encode_cursor(items[-1]["id"])
        elif row["scanned"] == window and row["last"] is not None:  # the window was full: more may match
            next_cursor = encode_cursor(row["last"])
        else:
            next_cursor = None
        for item in items:
            if hasattr(item.get("created_at"), "iso_format"):
                item["created_at"] = item["created_at"].iso_format()
        return Page(items=items, next_cursor=next_cursor)

    def iter_debates(self, flt: DebateFilter | None = None, *, batch_size: int = 256) -> Iterator[Debate]:
        """Stream whole MAGs in id order, one page query per `batch_size` MAGs (constant memory)."""
        flt = flt or DebateFilter()
        after: str | None = None
        while True:
            rows = self._page(flt, after, batch_size, MAG_PROJECTION)
            for row in rows:
                yield records.debate_from(*row)
            if len(rows) < batch_size:
                return
            after = rows[-1][0]["id"]

    def count_debates(self, flt: DebateFilter | None = None) -> int:
        where, params = (flt or DebateFilter()).where()
        query = "MATCH (d:Debate)" + (f" WHERE {where}" if where else "") + " RETURN count(d) AS n"
        return self._run(lambda t: t.run(query, **params).single()["n"])

    def datasets(self) -> list[str]:
        return self._run(
            lambda t: [r["ds"] for r in t.run("MATCH (d:Debate) RETURN DISTINCT d.dataset AS ds ORDER BY ds")]
        )

    def stats(self, flt: DebateFilter | None = None) -> Stats:
        """Agreement, rounds, team and per-agent accuracy, tokens and cost over the filtered debates.

        Per-agent accuracy is over each agent's *final* valid response in each debate, and over its
        round-0 response (before any discussion), so the effect of discussion is visible.
        """
        where, params = (flt or DebateFilter()).where()
        match = "MATCH (d:Debate)" + (f" WHERE {where}" if where else "")
        head = f"""
        {match}
        WITH collect(d) AS ds
        RETURN size(ds) AS debates,
               size([d IN ds WHERE d.status = 'complete']) AS complete,
               size([d IN ds WHERE d.consensus]) AS agreed,
               size([d IN ds WHERE d.consensus IS NOT NULL]) AS judged,
               [d IN ds WHERE d.rounds_used IS NOT NULL | d.rounds_used] AS rounds,
               [d IN ds WHERE d.team_correct IS NOT NULL | d.team_correct] AS team,
               reduce(s = 0, d IN ds | s + coalesce(d.tokens_in, 0)) AS tokens_in,
               reduce(s = 0, d IN ds | s + coalesce(d.tokens_out, 0)) AS tokens_out,
               reduce(s = 0.0, d IN ds | s + coalesce(d.cost_usd, 0.0)) AS cost_usd
        """
        agents_q = f"""
        {match}
        MATCH (d)-[:HAS_RESPONSE]->(r:Response)
        WITH d, r.agent AS agent, collect(r) AS rs
        WITH agent,
             [x IN rs WHERE x.round = 0][0] AS first,
             reduce(best = null, x IN [x IN rs WHERE x.parse_status = 'valid'] |
                    CASE WHEN best IS NULL OR x.round > best.round THEN x ELSE best END) AS last,
             size(rs) AS n, size([x IN rs WHERE x.parse_status = 'invalid']) AS invalid,
             reduce(s = 0, x IN rs | s + coalesce(x.tokens_out, 0)) AS tout
        RETURN agent,
               count(*) AS debates,
               sum(n) AS responses,
               sum(invalid) AS invalid,
               sum(tout) AS tokens_out,
               avg(CASE WHEN first.correct IS NULL THEN null WHEN first.correct THEN 1.0 ELSE 0.0 END) AS round0_accuracy,
               avg(CASE WHEN last.correct IS NULL THEN null WHEN last.correct THEN 1.0 ELSE 0.0 END) AS final_accuracy
        ORDER BY agent
        """
        majority_q = f"""
        {match}
        MATCH (d)-[:ON]->(q:Question)
        WITH d, q WHERE d.majority_answer IS NOT NULL AND q.gold_answer IS NOT NULL
        MATCH (d)-[:HAS_RESPONSE]->(r:Response) WHERE r.answer = d.majority_answer AND r.correct IS NOT NULL
        WITH d, collect(r.correct)[0] AS ok
        RETURN avg(CASE WHEN ok THEN 1.0 ELSE 0.0 END) AS acc
        """

        def tx(t: neo4j.ManagedTransaction) -> Stats:
            h = t.run(head, **params).single()
            team = h["team"]
            agents = [r.data() for r in t.run(agents_q, **params)]
            majority = t.run(majority_q, **params).single()["acc"]
            return Stats(
                debates=h["debates"],
                complete=h["complete"],
                consensus_rate=ratio(h["agreed"], h["judged"]),
                mean_rounds=ratio(sum(h["rounds"]), len(h["rounds"])),
                team_accuracy=ratio(sum(team), len(team)),
                majority_accuracy=majority,
                responses=sum(a["responses"] for a in agents),
                invalid_responses=sum(a["invalid"] for a in agents),
                tokens_in=h["tokens_in"],
                tokens_out=h["tokens_out"],
                cost_usd=h["cost_usd"],
                tokens_per_debate=ratio(h["tokens_in"] + h["tokens_out"], h["debates"]),
                agents=agents,
            )

        return self._run(tx, timeout=max(self.timeout, 120.0))
