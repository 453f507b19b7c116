"""`magdi generate` and `magdi worker`.

    magdi generate --panel configs/panels/simulated.yaml --dataset gsm8k \
        --data data/gsm8k/test.jsonl --limit 30 --job demo \
        --convincing data/convincing
    magdi generate ... --job demo --resume          # continue after a crash or Ctrl-C
    magdi worker                                    # claim jobs queued through the API

Only typer, the standard library and the core's protocol config (for its defaults) are imported
here at module level (the core CLI imports this module in every image); the generator's
dependencies load when a command runs.
"""

from pathlib import Path

import typer

from magdi.protocol import ProtocolConfig

_PROTOCOL = ProtocolConfig()  # the options below show the core's defaults, never their own


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command()(worker)


def generate(
    panel: Path = typer.Option(..., help="panel YAML (see configs/panels/)"),
    dataset: str = typer.Option(..., help="dataset name stored on every question, e.g. gsm8k"),
    data: Path = typer.Option(..., help="data file (or folder, for MATH)"),
    fmt: str | None = typer.Option(None, "--format", help="gsm8k|strategyqa|ecqa|aqua|arc|math|jsonl|auto; "
                                                          "default: the dataset name"),
    limit: int | None = typer.Option(None, min=1, help="number of questions"),
    offset: int = typer.Option(0, min=0, help="first question (0-based)"),
    job: str = typer.Option(..., help="job name; a job is identified by it"),
    resume: bool = typer.Option(False, help="continue an existing job; stored turns are never re-requested"),
    protocol: str = typer.Option(_PROTOCOL.name, help="reconcile | debate"),
    max_rounds: int = typer.Option(_PROTOCOL.max_rounds, min=0, help="discussion rounds after round 0"),
    topology: str = typer.Option(str(_PROTOCOL.topology), help="all | ring | 'a->b,b->c' (who sees whom)"),
    convincing: Path | None = typer.Option(None, help="convincing-samples folder (ReConcile's convincing/ "
                                                      "or one task folder); default: no demos"),
    reask: bool = typer.Option(_PROTOCOL.reask, help="re-ask once when a reply cannot be parsed"),
    missing_confidence: str = typer.Option(_PROTOCOL.missing_confidence,
                                           help="a missing confidence in the team vote: zero (ReConcile: counts "
                                                "as 0.0) | ignore (no weight)"),
    concurrency: int | None = typer.Option(None, min=1, help="debates in flight (default 16; batch mode: all)"),
    progress: bool = typer.Option(True, help="live progress bar"),
    mode: str = typer.Option("sync", help="sync: one chat completion per turn | batch: each round of every debate "
                                          "as Batch API jobs (the batch price, results within the provider's window)"),
    batch_dir: Path | None = typer.Option(None, file_okay=False, help="with --offline: the folder of the batch "
                                                                      "input and output files"),
    offline: bool = typer.Option(False, help="batch mode without an API server: write each batch as "
                                             "<stem>.input.jsonl in --batch-dir and wait for <stem>.output.jsonl "
                                             "(`vllm run-batch -i ... -o ...`)"),
) -> None:
    """Run a debate job against the panel's endpoints and store every turn in Neo4j as it completes."""
    from services.generator.cli_impl import run_generate

    run_generate(panel=panel, dataset=dataset, data=data, fmt=fmt, limit=limit, offset=offset, job=job,
                 resume=resume, protocol=protocol, max_rounds=max_rounds, topology=topology,
                 convincing=convincing, reask=reask, missing_confidence=missing_confidence,
                 concurrency=concurrency, show_progress=progress, mode=mode, batch_dir=batch_dir, offline=offline)


def worker(
    once: bool = typer.Option(False, help="exit when no job is queued instead of polling"),
    concurrency: int | None = typer.Option(None, min=1, help="debates in flight per job"),
) -> None:
    """Run a generator worker: claim queued jobs (with a lease), run them, repeat."""
    from services.generator.cli_impl import run_worker

    run_worker(once=once, concurrency=concurrency)
