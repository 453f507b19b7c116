"""Saved artefacts and resumable checkpoints.

An ARTEFACT directory is what users keep: a standard peft adapter (`adapter_config.json` +
`adapter_model.safetensors`, loadable with `PeftModel.from_pretrained(base, dir)`), the training
heads (`heads.pt`, not needed for inference), the tokenizer, the exact config
(`trainer_config.yaml`) and `artifact.json` naming the base model to load under the adapter.

A CHECKPOINT is an artefact plus what exact resume needs: optimizer, scheduler and grad-scaler
state (`trainer_state.pt`), every rank's RNG state (`rng-<rank>.pt`) and the data position
(`state.json`: optimizer step, epoch, micro-batches consumed in that epoch). Checkpoints are
written to a temporary directory and renamed, so a crash never leaves a half-written "latest".
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from trainer.config import TrainConfig, from_dict
from trainer.distributed import DistContext, barrier

log = logging.getLogger(__name__)

HEADS_FILE = "heads.pt"
CONFIG_FILE = "trainer_config.yaml"
ARTIFACT_FILE = "artifact.json"
STATE_FILE = "state.json"
OPTIM_FILE = "trainer_state.pt"


@dataclass
class TrainState:
    """Position of the run: optimizer steps done, current epoch, micro-batches consumed in it."""

    step: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0


def save_artifact(path: Path, student: Any, tokenizer: Any, cfg: TrainConfig, base_model: str,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write adapter + heads + tokenizer + config to `path` (created)."""
    path.mkdir(parents=True, exist_ok=True)
    student.lm.save_pretrained(path)
    torch.save({"heads": student.heads_state(), "config": cfg.to_dict()}, path / HEADS_FILE)
    tokenizer.save_pretrained(path)
    (path / CONFIG_FILE).write_text(cfg.to_yaml(), encoding="utf-8")
    (path / ARTIFACT_FILE).write_text(json.dumps({"base_model": base_model, **(extra or {})}, indent=1))
    return path


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, ctx: DistContext, *, student: Any, tokenizer: Any, cfg: TrainConfig,
                    base_model: str, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                    state: TrainState, keep: int) -> Path:
    """All ranks call this at the same step; rank 0 writes the shared parts, each rank its RNG."""
    root = run_dir / "checkpoints"
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-step-{state.step:08d}"
    if ctx.main:
        shutil.rmtree(tmp, ignore_errors=True)
        save_artifact(tmp, student, tokenizer, cfg, base_model, {"step": state.step})
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None}, tmp / OPTIM_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state)))
    barrier(ctx)
    torch.save(_rng_state(), tmp / f"rng-{ctx.rank}.pt")
    barrier(ctx)
    if ctx.main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint %s", final)
    barrier(ctx)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = sorted(p for p in (run_dir / "checkpoints").glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def restore_checkpoint(path: Path, ctx: DistContext, *, student: Any, optimizer: torch.optim.Optimizer,
                       scheduler: Any, scaler: Any) -> TrainState:
    """Load weights, optimizer/scheduler/scaler, this rank's RNG and the data position."""
    from peft import load_peft_weights, set_peft_model_state_dict

    weights = load_peft_weights(str(path), device=str(ctx.device))
    set_peft_model_state_dict(student.lm, weights)
    heads = torch.load(path / HEADS_FILE, map_location=ctx.device, weights_only=False)
    student.load_heads_state(heads["heads"])
    blob = torch.load(path / OPTIM_FILE, map_location=ctx.device, weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler is not None and blob["scaler"] is not None:
        scaler.load_state_dict(blob["scaler"])
    rng_file = path / f"rng-{ctx.rank}.pt"
    if rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=False))
    else:  # resumed on more ranks than saved: fresh but deterministic streams
        log.warning("no RNG state for rank %d in %s; resume is not bit-exact", ctx.rank, path)
    state = TrainState(**json.loads((path / STATE_FILE).read_text()))
    log.info("resumed from %s (step %d, epoch %d, micro-batch %d)", path, state.step, state.epoch, state.micro_in_epoch)
    return state


# -- loading for inference ------------------------------------------------------------------------
def read_artifact_config(path: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The training config and artefact metadata of an adapter directory."""
    cfg_file, meta_file = path / CONFIG_FILE, path / ARTIFACT_FILE
    if not cfg_file.is_file() or not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a trainer artefact (needs {CONFIG_FILE} and {ARTIFACT_FILE})")
    cfg = from_dict(yaml.safe_load(cfg_file.read_text(encoding="utf-8")), where=str(cfg_file))
    return cfg, json.loads(meta_file.read_text())


def load_for_inference(path: Path, device: torch.device) -> tuple[Any, Any, TrainConfig, dict[str, Any]]:
    """(base model + adapter in eval mode, tokenizer, config, metadata). Heads are not loaded."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.model import load_tokenizer, precision_plan

    cfg, meta = read_artifact_config(path)
    plan = precision_plan(cfg.model.precision, device)
    base = AutoModelForCausalLM.from_pretrained(meta["base_model"], dtype=plan.load_dtype)
    model = PeftModel.from_pretrained(base, str(path)).to(device)
    model.eval()
    return model, load_tokenizer(str(path)), cfg, meta
