"""Bodies of the generator's CLI commands (kept apart from `cli.py`, which must import only typer).

Order in `run_generate` is the safety argument: panel, keys, data, demos and the endpoints'
model lists are all checked before a job is created, and nothing is paid before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.table import Table

from magdi import redact
from magdi.cli.common import console, fail, store_or_exit, user_errors
from magdi.config_loading import load_settings
from magdi.datasets import default_format, load_questions
from magdi.mag import JOB_MODES, JobStatus
from magdi.panel import load_panel
from magdi.protocol import ProtocolConfig
from magdi.store.jobs import JobStore
from services.generator.batch_api import TERMINAL
from services.generator.client import preflight
from services.generator.engine import Progress
from services.generator.jobrun import JobResult, describe, new_worker_id, owner_is_dead, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import load_convincing
from services.generator.settings import GeneratorSettings, get_settings

logger = logging.getLogger(__name__)


def run_generate(*, panel: Path, dataset: str, data: Path, fmt: str | None, limit: int | None, offset: int,
                 job: str, resume: bool, protocol: str, max_rounds: int, topology: str, convincing: Path | None,
                 reask: bool, missing_confidence: str, concurrency: int | None, show_progress: bool,
                 mode: str = "sync", batch_dir: Path | None = None, offline: bool = False) -> None:
    settings = get_settings()
    if mode not in JOB_MODES:
        raise fail(f"--mode must be sync or batch, not {mode!r}")
    if offline and (mode != "batch" or batch_dir is None):
        raise fail("--offline writes batch files for `vllm run-batch`: use it with --mode batch and --batch-dir DIR")
    if batch_dir is not None and not offline:
        raise fail("--batch-dir is the folder of --offline batch files; add --offline (and --mode batch)")
    with user_errors():
        panel_cfg = load_panel(panel)
        data_format = fmt or default_format(dataset)
        sample = load_questions(data, data_format, dataset=dataset, offset=offset, limit=1)
        demos = (load_convincing(convincing, dataset, sample[0].task, [a.demos_key for a in panel_cfg.agents])
                 if convincing else {})
        protocol_cfg = ProtocolConfig(name=protocol, max_rounds=max_rounds, topology=topology, reask=reask,
                                      missing_confidence=missing_confidence, demos=demos,
                                      demos_source=str(convincing) if convincing else None)
        spec = build_spec(name=job, dataset=dataset, data_path=str(data.resolve()), data_format=data_format,
                          offset=offset, limit=limit, panel=panel_cfg, protocol=protocol_cfg, mode=mode,
                          offline=offline)
        prepared = prepare(spec, policy=settings.policy)
        redact.install(prepared.keys.values())
        if not offline:  # offline, the model runs elsewhere (`vllm run-batch`); no endpoint is called
            asyncio.run(preflight(prepared.panel, prepared.keys, settings.preflight_timeout_s))
    worker_id = new_worker_id()
    with store_or_exit() as store:
        jobs = JobStore(store)
        with user_errors():
            store.check_questions(prepared.questions, where=f"{data}: ")  # never change a stored question
            claimed_at = time.monotonic()
            _claim_for_cli(jobs, spec, worker_id, settings, resume, total=len(prepared.questions))
        bar_progress = Progress()
        result = asyncio.run(_run_with_bar(prepared, store, jobs, worker_id, settings, claimed_at, bar_progress,
                                           concurrency, show_progress, batch_dir))
    _print_summary(job, result)
    if result.status is JobStatus.QUEUED:
        console.print(f"stopped early; continue with: magdi generate ... --job {job} --resume")
        raise typer.Exit(3)
    if result.status is not JobStatus.COMPLETE:
        raise typer.Exit(1)


def _claim_for_cli(jobs: JobStore, spec: Any, worker_id: str, settings: GeneratorSettings, resume: bool,
                   total: int) -> None:
    existing = jobs.get(spec.id)
    if existing is None:
        if resume:
            raise fail(f"there is no job named {spec.name!r} to resume")
        job = jobs.create(spec, total=total, owner=worker_id, lease_s=settings.lease_s)
        if job.lease_owner != worker_id:
            raise fail(f"job {spec.name!r} was just created by another process ({job.lease_owner})")
        return
    if not resume:
        raise fail(f"job {spec.name!r} already exists (status {existing.status.value}); pass --resume to "
                   f"continue it or choose another --job name")
    jobs.create(spec)  # raises JobConflict when the configuration differs
    owner = existing.lease_owner
    take_over = owner if owner_is_dead(owner, worker_id) else None
    if take_over:
        logger.info("taking over job %s from dead local process %s", spec.id, owner)
    if jobs.claim(worker_id, settings.lease_s, job_id=spec.id, take_over_from=take_over, any_status=True) is None:
        until = existing.lease_until.isoformat(timespec="seconds") if existing.lease_until else "?"
        raise fail(f"job {spec.name!r} is being run by {owner} (lease until {until}); stop that process "
                   f"or wait for its lease to expire")


async def _run_with_bar(prepared: Any, store: Any, jobs: JobStore, worker_id: str, settings: GeneratorSettings,
                        claimed_at: float, progress: Progress, concurrency: int | None, show: bool,
                        batch_dir: Path | None = None) -> JobResult:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
              TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, disable=not show,
              transient=False)
    total = len(prepared.questions)
    with bar:
        task_id = bar.add_task(prepared.spec.name, total=total, info="")

        async def refresh() -> None:
            while True:
                p = progress
                bar.update(task_id, completed=p.done + p.failed + p.crashed + p.skipped,
                           info=f"in flight {p.in_flight}  {_calls_info(p)}  tokens {p.tokens_in + p.tokens_out:,}  "
                                f"invalid {p.invalid}  absent {p.absent}  errors {len(p.errors)}")
                await asyncio.sleep(0.25)

        ticker = asyncio.create_task(refresh())
        try:
            return await run_job(prepared, store, jobs, worker_id, settings, claimed_at=claimed_at, stop=stop,
                                 progress=progress, concurrency=concurrency, batch_dir=batch_dir)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


def _calls_info(p: Progress) -> str:
    """Calls made; in batch mode the round, the batches and the lines of the batches still running."""
    if not p.batches:
        return f"calls {p.calls}"
    running = [b for b in p.batches.values() if b.output_file_id is None and b.status not in TERMINAL]
    now = running or list(p.batches.values())[-1:]
    lines = "  ".join(f"{b.batch_id} {b.completed}/{b.total}" for b in now[:3]) + (" ..." if len(now) > 3 else "")
    rounds = max((r for b in p.batches.values() for r in b.rounds), default=0)
    return f"round {rounds}  batches {len(p.batches)} ({len(running)} running: {lines})"


def _print_summary(job: str, result: JobResult) -> None:
    summary = describe(result)
    table = Table(title=f"job {job}", show_header=False)
    for key, value in summary.items():
        if key != "errors":
            table.add_row(key, str(value))
    console.print(table)
    for error in summary["errors"]:
        console.print(f"[yellow]error:[/] {error}", highlight=False, markup=True)


def run_worker(*, once: bool, concurrency: int | None) -> None:
    from services.generator import worker

    overrides: dict[str, Any] = {"once": once} if once else {}
    if concurrency:
        overrides["concurrency"] = concurrency
    redact.install()
    # The worker's own lines (claims, finishes, failures) at INFO without -v; with -v the
    # project's loggers go to DEBUG while the driver's and HTTP clients' traffic stays quiet.
    project = logging.getLogger("services")
    if project.getEffectiveLevel() > logging.INFO:
        project.setLevel(logging.INFO)
    with user_errors():
        code = worker.main(load_settings(GeneratorSettings, **overrides))
    if code:
        raise typer.Exit(code)
