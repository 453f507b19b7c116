"""`magdi import | export | cypher | stats`: moving MAGs in and out, and looking at them."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer
from rich.progress import Progress
from rich.table import Table

from magdi.answers import task_for_dataset
from magdi.cli.common import console, debate_filter, fail, store_or_exit, user_errors
from magdi.formats import jsonl, magdi_ref
from magdi.formats.exports import EXPORTERS, exporter
from magdi.formats.sft import check_prompt_format
from magdi.mag import TaskType
from magdi.rounding import round_floats
from magdi.store.cypher import CypherRejected, run_readonly

IMPORT_FORMATS = ("magdi-ref", "jsonl")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command()(export)
    app.command()(cypher)
    app.command()(stats)


def import_(
    file: Path = typer.Argument(..., help="file to import"),
    fmt: str = typer.Option(..., "--format", help="magdi-ref | jsonl"),
    dataset: str | None = typer.Option(None, help="dataset name (required for magdi-ref)"),
    task: TaskType | None = typer.Option(None, help="answer type; default from the dataset name"),
    skip_invalid: bool = typer.Option(False, help="import the valid records and report the others"),
    batch: int = typer.Option(200, min=1, help="MAGs per write transaction"),
) -> None:
    """Import MAGs. The whole file is validated first: with a bad record, two records of one debate, or a
    question stored with other content, nothing is stored."""
    if fmt not in IMPORT_FORMATS:
        raise fail(f"unknown import format {fmt!r}; known: {', '.join(IMPORT_FORMATS)}")
    with user_errors():
        if fmt == "magdi-ref":
            if not dataset:
                raise fail("--dataset is required for --format magdi-ref")
            debates, errors = magdi_ref.load(file, dataset=dataset, task=task or task_for_dataset(dataset),
                                             skip_invalid=skip_invalid)
        else:
            debates, errors = jsonl.load(file, skip_invalid=skip_invalid)
    for e in errors:
        console.print(f"[yellow]skipped:[/] {e}", highlight=False)
    with store_or_exit() as store, Progress(console=console, transient=True) as progress:
        with user_errors():  # before the first batch: a question that would change means nothing is written
            store.check_questions([d.question for d in debates], where=f"{file}: ")
        task_id = progress.add_task("importing", total=len(debates))
        for i in range(0, len(debates), batch):
            chunk = debates[i : i + batch]
            store.write_debates(chunk)
            progress.advance(task_id, len(chunk))
    console.print(f"imported {len(debates)} MAG(s) from {file}" + (f", skipped {len(errors)}" if errors else ""))


def export(
    out: Path = typer.Option(..., help="output file"),
    fmt: str = typer.Option("jsonl", "--format", help=f"one of: {', '.join(sorted(EXPORTERS))}"),
    dataset: str | None = typer.Option(None),
    job: str | None = typer.Option(None, help="job name or id (demo or job-demo)"),
    prompt_format: str | None = typer.Option(
        None, "--prompt-format",
        help="sft/dpo: chat_template (messages, default) or reference ([INST] ### Question: ... prompt/completion); "
             "the same prompt `magdi train` uses with that model.prompt_format"),
) -> None:
    """Export MAGs, streamed from Neo4j (magdi-ref as a JSON list, the others as JSON lines)."""
    with user_errors():
        to_records = exporter(fmt)
        if prompt_format is not None:
            if fmt not in ("sft", "dpo"):
                raise fail(f"--prompt-format applies to the sft and dpo formats, not {fmt}")
            to_records = functools.partial(to_records, prompt_format=check_prompt_format(prompt_format))
    with store_or_exit() as store:
        flt = debate_filter(store, dataset=dataset, job=job)
        out.parent.mkdir(parents=True, exist_ok=True)
        total = store.count_debates(flt)
        with Progress(console=console, transient=True) as progress:
            task_id = progress.add_task("exporting", total=total)

            def debates():
                for d in store.iter_debates(flt):
                    progress.advance(task_id)
                    yield d

            if fmt == "magdi-ref":
                n = magdi_ref.dump(debates(), out)
            else:
                n = 0
                with out.open("w", encoding="utf-8") as fh:
                    for rec in to_records(debates()):
                        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                        n += 1
    console.print(f"wrote {n} record(s) to {out}")


def cypher(
    query: str = typer.Argument(..., help="a read-only Cypher query"),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=JSON_VALUE, repeatable"),
    fmt: str = typer.Option("table", "--format", help="table | json (one JSON object per row)"),
    limit: int = typer.Option(1000, min=1, help="row cap"),
    timeout: float = typer.Option(30.0, help="seconds"),
) -> None:
    """Run a read-only Cypher query (writes, LOAD CSV and non-allow-listed procedures are refused)."""
    params = {}
    for p in param:
        name, sep, raw = p.partition("=")
        if not sep or not name:
            raise fail(f"--param {p!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    with store_or_exit() as store:
        try:
            result = run_readonly(store.driver, query, params, database=store.database, timeout_s=timeout,
                                  max_rows=limit)
        except CypherRejected as exc:
            raise fail(str(exc)) from None
    if fmt == "json":
        for row in result.rows:
            typer.echo(json.dumps(dict(zip(result.columns, row, strict=True)), ensure_ascii=False, default=str))
    elif result.columns:
        table = Table(*result.columns)
        for row in result.rows:
            table.add_row(*(json.dumps(v, default=str) if not isinstance(v, str) else v for v in row))
        console.print(table)
    if result.plan is not None:  # EXPLAIN / PROFILE
        typer.echo(json.dumps({"plan": result.plan}, ensure_ascii=False, default=str))
    if result.truncated:
        console.print(f"[yellow]truncated at {limit} rows[/]")


def stats(
    dataset: str | None = typer.Option(None),
    job: str | None = typer.Option(None, help="job name or id (demo or job-demo)"),
    fmt: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """Debates, agreement, rounds, team and per-agent accuracy, tokens and cost."""
    from dataclasses import asdict

    with store_or_exit() as store:
        s = store.stats(debate_filter(store, dataset=dataset, job=job))
    if fmt == "json":
        typer.echo(json.dumps(round_floats(asdict(s)), default=str))
        return
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    scope = " ".join(f"{k}={v}" for k, v in (("dataset", dataset), ("job", job)) if v) or "all debates"
    summary = Table(title=f"MAG stats: {scope}", show_header=False)
    for key, value in [
        ("debates", f"{s.debates} ({s.complete} complete)"),
        ("consensus rate", pct(s.consensus_rate)),
        ("mean rounds", "n/a" if s.mean_rounds is None else f"{s.mean_rounds:.2f}"),
        ("team accuracy (weighted vote)", pct(s.team_accuracy)),
        ("majority-vote accuracy", pct(s.majority_accuracy)),
        ("responses (invalid)", f"{s.responses} ({s.invalid_responses})"),
        ("tokens in / out", f"{s.tokens_in} / {s.tokens_out}"),
        ("tokens per debate", "n/a" if s.tokens_per_debate is None else f"{s.tokens_per_debate:.0f}"),
        ("cost (USD)", f"{s.cost_usd:.4f}"),
    ]:
        summary.add_row(key, value)
    console.print(summary)
    agents = Table("agent", "debates", "round-0 accuracy", "final accuracy", "invalid", "tokens out")
    agents.columns[0].no_wrap = True
    for a in s.agents:
        agents.add_row(a["agent"], str(a["debates"]), pct(a["round0_accuracy"]), pct(a["final_accuracy"]),
                       str(a["invalid"]), str(a["tokens_out"]))
    console.print(agents)
