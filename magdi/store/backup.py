"""Backup and restore of a whole magdi database as JSON lines (every node and relationship).

Format `magdi-backup/1`: a header line, then one line per node
`{"n": key, "labels": [...], "props": {...}}`, then one per relationship
`{"r": [start key, end key], "type": T, "props": {...}}`. Keys are numbers local to the file.
Values keep their Neo4j types: JSON numbers, strings, booleans and lists as such; temporal values
and byte arrays as tagged objects (`{"$datetime": ISO-8601}`, `{"$date": ...}`, `{"$duration": ...}`,
`{"$bytes": base64}`), so a restore gives back the same property types, not strings.

The `:SchemaVersion` node is not data: a backup records the schema version in its header and a
restore applies the current migrations first, loads the data, and then, for a backup from an older
schema, runs the newer migrations again over the restored data (every step is idempotent).
Restore needs an EMPTY database (no node but `:SchemaVersion`) unless `wipe=True`; it writes in
batches, marking new nodes with a temporary label and key, which it removes at the end. Stop the
generator workers first: the dump is read in one read transaction, but jobs that keep writing
make the backup a moving target.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import neo4j
import neo4j.time

from magdi.errors import UserError
from magdi.store import schema

log = logging.getLogger(__name__)

FORMAT = "magdi-backup/1"
_TMP_LABEL = "_MagdiRestore"
_TMP_KEY = "_magdi_restore_key"
_SKIP = "NOT n:SchemaVersion"


class BackupError(UserError):
    """A backup file that cannot be restored, or a target that is not empty."""


@dataclass
class BackupInfo:
    nodes: int
    relationships: int
    schema_version: int


# -- values -------------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, neo4j.time.DateTime):
        return {"$datetime": value.iso_format()}
    if isinstance(value, neo4j.time.Date):
        return {"$date": value.iso_format()}
    if isinstance(value, neo4j.time.Time):
        return {"$time": value.iso_format()}
    if isinstance(value, neo4j.time.Duration):
        return {"$duration": value.iso_format()}
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise BackupError(f"cannot back up a property value of type {type(value).__name__}")


_DECODERS = {"$datetime": "datetime($v)", "$date": "date($v)", "$time": "time($v)", "$duration": "duration($v)"}


def _is_tagged(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in (*_DECODERS, "$bytes")


def decode_plain(value: Any) -> Any:
    """Values the driver can send as they are; temporal tags are converted by Cypher (see _props_cypher)."""
    if isinstance(value, list):
        return [decode_plain(v) for v in value]
    if _is_tagged(value) and "$bytes" in value:
        return base64.b64decode(value["$bytes"])
    return value


def _split(props: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, Any]]]:
    """Plain properties, and temporal ones as (cypher function, text or list of texts)."""
    plain, temporal = {}, {}
    for key, value in props.items():
        if _is_tagged(value) and "$bytes" not in value:
            tag = next(iter(value))
            temporal[key] = (tag, value[tag])
        elif isinstance(value, list) and value and all(_is_tagged(v) and "$bytes" not in v for v in value):
            tag = next(iter(value[0]))
            temporal[key] = (tag + "[]", [v[tag] for v in value])
        else:
            plain[key] = decode_plain(value)
    return plain, temporal


# -- backup -------------------------------------------------------------------------------------
def _node_lines(tx: neo4j.ManagedTransaction, keys: dict[str, int]) -> Iterator[str]:
    for rec in tx.run(f"MATCH (n) WHERE {_SKIP} RETURN elementId(n) AS id, labels(n) AS labels, "
                      "properties(n) AS props"):
        keys[rec["id"]] = len(keys)
        props = {k: encode(v) for k, v in sorted(rec["props"].items())}
        yield json.dumps({"n": keys[rec["id"]], "labels": sorted(rec["labels"]), "props": props}, ensure_ascii=False)


def _rel_lines(tx: neo4j.ManagedTransaction, keys: dict[str, int]) -> Iterator[str]:
    for rec in tx.run("MATCH (a)-[r]->(b) RETURN elementId(a) AS a, type(r) AS type, properties(r) AS props, "
                      "elementId(b) AS b"):
        if rec["a"] not in keys or rec["b"] not in keys:
            continue  # a relationship of the SchemaVersion node (there are none)
        props = {k: encode(v) for k, v in sorted(rec["props"].items())}
        yield json.dumps({"r": [keys[rec["a"]], keys[rec["b"]]], "type": rec["type"], "props": props},
                         ensure_ascii=False)


def backup(driver: neo4j.Driver, out: Path, *, database: str | None = None) -> BackupInfo:
    """Write every node and relationship (all properties) to `out`; atomic (temp file, then rename)."""
    version = schema.current_version(driver, database)
    tmp = out.with_name(out.name + ".partial")
    nodes = rels = 0
    with driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as session, \
            session.begin_transaction() as tx, tmp.open("w", encoding="utf-8") as fh:
        header = {"format": FORMAT, "schema_version": version, "created_at": datetime.now(UTC).isoformat()}
        fh.write(json.dumps(header) + "\n")
        keys: dict[str, int] = {}
        for line in _node_lines(tx, keys):
            fh.write(line + "\n")
            nodes += 1
        for line in _rel_lines(tx, keys):
            fh.write(line + "\n")
            rels += 1
        fh.write(json.dumps({"end": True, "nodes": nodes, "relationships": rels}) + "\n")
    tmp.replace(out)
    return BackupInfo(nodes, rels, version)


# -- restore ------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    nodes, rels, header, end = [], [], None, None
    with fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BackupError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
            if header is None:
                if not isinstance(item, dict) or item.get("format") != FORMAT:
                    raise BackupError(f"{path}: not a {FORMAT} file (line 1 has no format {FORMAT!r})")
                header = item
            elif "n" in item:
                nodes.append(item)
            elif "r" in item:
                rels.append(item)
            elif item.get("end"):
                end = item
            else:
                raise BackupError(f"{path}: line {n}: neither a node nor a relationship")
    if header is None or end is None:
        raise BackupError(f"{path}: truncated backup (no {'header' if header is None else 'end'} line)")
    if (end["nodes"], end["relationships"]) != (len(nodes), len(rels)):
        raise BackupError(f"{path}: truncated backup ({len(nodes)} nodes and {len(rels)} relationships, "
                          f"the end line says {end['nodes']} and {end['relationships']})")
    return header, nodes, rels


def _auto_commit(driver: neo4j.Driver, database: str | None, query: str) -> None:
    """CALL {} IN TRANSACTIONS needs an implicit (auto-commit) transaction."""
    with driver.session(database=database) as session:
        session.run(query).consume()


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _set_temporal(var: str, temporal_keys: list[tuple[str, str]]) -> str:
    parts = []
    for key, tag in temporal_keys:
        fn = _DECODERS[tag.removesuffix("[]")].replace("$v", "x")
        source = f"row.t[{json.dumps(key)}]"
        if tag.endswith("[]"):
            parts.append(f"{var}.{_quote(key)} = [x IN {source} | {fn}]")
        else:
            parts.append(f"{var}.{_quote(key)} = {fn.replace('(x)', f'({source})')}")
    return (" SET " + ", ".join(parts)) if parts else ""


def restore(driver: neo4j.Driver, path: Path, *, database: str | None = None, wipe: bool = False,
            batch: int = 1000) -> BackupInfo:
    """Load a backup into an empty database (or wipe it first with `wipe=True`)."""
    header, nodes, rels = _read(path)
    current = schema.apply(driver, database)
    if header["schema_version"] > current:
        raise BackupError(f"{path}: made by schema version {header['schema_version']}, newer than this magdi "
                          f"({current}); upgrade magdi first")
    existing = driver.execute_query(f"MATCH (n) WHERE {_SKIP} RETURN count(n) AS n", database_=database)[0][0]["n"]
    if existing and not wipe:
        raise BackupError(f"the database holds {existing} nodes; restore needs an empty one (pass --wipe to "
                          "delete everything first)")
    if existing:
        _auto_commit(driver, database, f"MATCH (n) WHERE {_SKIP} CALL (n) {{ DETACH DELETE n }} "
                                       "IN TRANSACTIONS OF 5000 ROWS")
    driver.execute_query(f"CREATE INDEX magdi_restore_key IF NOT EXISTS FOR (n:{_TMP_LABEL}) ON (n.{_TMP_KEY})",
                         database_=database)
    driver.execute_query("CALL db.awaitIndexes(60)", database_=database)
    try:
        groups: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], list[dict[str, Any]]] = defaultdict(list)
        for item in nodes:
            plain, temporal = _split(item["props"])
            tkeys = tuple(sorted((k, tag) for k, (tag, _) in temporal.items()))
            groups[(tuple(item["labels"]), tkeys)].append(
                {"k": item["n"], "p": plain, "t": {k: v for k, (_, v) in temporal.items()}})
        for (labels, tkeys), rows in groups.items():
            label_text = "".join(f":{_quote(lb)}" for lb in (*labels, _TMP_LABEL))
            query = (f"UNWIND $rows AS row CREATE (n{label_text}) SET n = row.p, n.{_TMP_KEY} = row.k"
                     + _set_temporal("n", list(tkeys)))
            for i in range(0, len(rows), batch):
                driver.execute_query(query, rows=rows[i:i + batch], database_=database)
        rgroups: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = defaultdict(list)
        for item in rels:
            plain, temporal = _split(item["props"])
            tkeys = tuple(sorted((k, tag) for k, (tag, _) in temporal.items()))
            rgroups[(item["type"], tkeys)].append({"a": item["r"][0], "b": item["r"][1], "p": plain,
                                                   "t": {k: v for k, (_, v) in temporal.items()}})
        for (rtype, tkeys), rows in rgroups.items():
            query = (f"UNWIND $rows AS row MATCH (a:{_TMP_LABEL} {{{_TMP_KEY}: row.a}}) "
                     f"MATCH (b:{_TMP_LABEL} {{{_TMP_KEY}: row.b}}) CREATE (a)-[r:{_quote(rtype)}]->(b) SET r = row.p"
                     + _set_temporal("r", list(tkeys)))
            for i in range(0, len(rows), batch):
                driver.execute_query(query, rows=rows[i:i + batch], database_=database)
        _auto_commit(driver, database, f"MATCH (n:{_TMP_LABEL}) CALL (n) {{ REMOVE n:{_TMP_LABEL}, n.{_TMP_KEY} }} "
                                       "IN TRANSACTIONS OF 5000 ROWS")
    finally:
        driver.execute_query("DROP INDEX magdi_restore_key IF EXISTS", database_=database)
    if header["schema_version"] < current:  # data written by an older magdi: run the newer migrations on it
        driver.execute_query("MATCH (s:SchemaVersion {id: 'magdi'}) SET s.version = $v",
                             v=header["schema_version"], database_=database)
        schema.apply(driver, database)
    return BackupInfo(len(nodes), len(rels), header["schema_version"])
