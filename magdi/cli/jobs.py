"""`magdi jobs list | status [NAME]`: generator jobs as stored on their `:Job` nodes."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from magdi.cli.common import console, fail, store_or_exit
from magdi.mag import Job
from magdi.rounding import round_floats
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore, job_summary

app = typer.Typer(no_args_is_help=True)


def _row(job: Job) -> dict[str, Any]:
    """A job as the CLI shows it: the API's view without the spec, times to the second."""
    row = {k: v for k, v in job_summary(job).items() if k != "spec"}
    row["name"] = job.spec.name
    for key in ("lease_until", "created_at", "updated_at"):
        value = getattr(job, key)
        row[key] = value.isoformat(timespec="seconds") if value is not None else None
    row["progress"] = None if job.progress is None else round(job.progress, 4)
    return row


def _rows(store: GraphStore) -> list[dict[str, Any]]:
    return [_row(job) for job in JobStore(store).list()]


def _pick(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The job row `name` (a job name or id) means; exit 1 listing the jobs when there is none."""
    from magdi.store.job_names import UnknownJob, candidate_ids

    by_id = {r["id"]: r for r in rows}
    for job_id in candidate_ids(name):
        if job_id in by_id:
            return by_id[job_id]
    raise fail(str(UnknownJob(name, sorted(by_id))), code=1)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


@app.command("list")
def list_(
    status: str | None = typer.Option(None, help="queued | running | complete | failed | cancelled"),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """All jobs, oldest first: status, progress, counters, cost and lease."""
    with store_or_exit() as store:
        rows = [r for r in _rows(store) if status is None or r["status"] == status]
    if fmt == "json":
        typer.echo(json.dumps(round_floats(rows), default=str))
        return
    table = Table("name", "status", "progress", "done/failed/total", "tokens in/out", "cost (USD)", "lease owner")
    for r in rows:
        table.add_row(r["name"], r["status"], _pct(r["progress"]),
                      f"{r.get('done') or 0}/{r.get('failed') or 0}/{r.get('total') or 0}",
                      f"{r.get('tokens_in') or 0}/{r.get('tokens_out') or 0}", f"{r.get('cost_usd') or 0:.4f}",
                      r.get("lease_owner") or "-")
    console.print(table)


@app.command()
def status(
    name: str | None = typer.Argument(None, help="job name or id (demo or job-demo); default: every job"),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """One job in detail (or all): progress, counters, tokens, cost, lease, calls, retries, 429 waits, errors."""
    with store_or_exit() as store:  # one connection (and schema check) for the jobs and their batches
        rows = _rows(store)
        if name is not None:
            rows = [_pick(rows, name)]
        _add_batches(store, rows)
    if fmt == "json":
        typer.echo(json.dumps(round_floats(rows if name is None else rows[0]), default=str))
        return
    for r in rows:
        table = Table(title=f"job {r['name']} ({r['id']})", show_header=False)
        lease = f"{r['lease_owner']} until {r['lease_until']}" if r.get("lease_owner") else "-"
        for key, value in [
            ("status", r["status"]),
            ("progress", _pct(r["progress"])),
            ("done / failed / total", f"{r.get('done') or 0} / {r.get('failed') or 0} / {r.get('total') or 0}"),
            ("tokens in / out", f"{r.get('tokens_in') or 0} / {r.get('tokens_out') or 0}"),
            ("cost (USD)", f"{r.get('cost_usd') or 0:.4f}"),
            ("lease", lease),
            ("calls / retries / 429 waits / failed calls",
             " / ".join("-" if r.get(k) is None else str(r[k])
                        for k in ("calls", "retries", "rate_limit_waits", "call_failures"))),
            ("Neo4j outages (writes held, s)",
             "-" if r.get("store_outages") is None else f"{r['store_outages']} ({r.get('store_held_s') or 0:.1f})"),
            ("created / updated", f"{r.get('created_at')} / {r.get('updated_at')}"),
            ("errors", str(len(r.get("errors") or []))),
        ]:
            table.add_row(key, value)
        console.print(table)
        for error in (r.get("errors") or [])[:20]:
            console.print(f"  [yellow]error:[/] {error}", highlight=False, markup=True)
        if r["batches"]:
            console.print(_batch_table(r["batches"]))


SHOWN_BATCHES = 20  # the latest; `--format json` lists them all


def _add_batches(store: GraphStore, rows: list[dict[str, Any]]) -> None:
    """Each job's batches (batch mode: provider batch ids or offline file stems), in submission order."""
    from magdi.store.batches import BatchStore

    batches = BatchStore(store).summaries_of([row["id"] for row in rows])
    for row in rows:
        row["batches"] = batches[row["id"]]


def _batch_table(batches: list[dict[str, Any]]) -> Table:
    shown = batches[-SHOWN_BATCHES:]
    more = f" (the latest {len(shown)} of {len(batches)})" if len(shown) < len(batches) else ""
    table = Table("#", "batch id", "model", "rounds", "status", "done / failed / requests", "ingested",
                  title=f"batches{more}")
    for b in shown:
        table.add_row(str(b["seq"]), b.get("batch_id") or "-", b.get("model") or "-",
                      ",".join(str(r) for r in b.get("rounds") or []), b.get("status") or "-",
                      f"{b.get('completed') or 0} / {b.get('failed') or 0} / {b.get('total') or 0}",
                      "yes" if b.get("ingested") else "no")
    return table
