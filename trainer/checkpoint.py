"""Saved artefacts and resumable checkpoints.

An ARTEFACT directory is what users keep: a standard peft adapter (`adapter_config.json` +
`adapter_model.safetensors`, loadable with `PeftModel.from_pretrained(base, dir)`), the training
heads (`heads.pt`, not needed for inference), the tokenizer, the exact config
(`trainer_config.yaml`), `artifact.json` naming the base model to load under the adapter and
the prompt format it was trained with, and a model card (`README.md`, see `trainer.card`).
The base is named portably: a hub id or packaged-model name as configured, or, for a base
built inside the run directory (tiny models), a path relative to the artefact, so a moved run
directory still loads (`resolve_base`).

A CHECKPOINT is an artefact plus what exact resume needs: optimizer, scheduler and grad-scaler
state (`trainer_state.pt`), every rank's RNG state (`rng-<rank>.pt`) and the data position
(`state.json`: optimizer step, epoch, micro-batches consumed in that epoch). Checkpoints are
written to a temporary directory and renamed, so a crash never leaves a half-written "latest".
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from magdi import models
from trainer.config import TrainConfig, load_config
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


def base_reference(configured: str, loaded_from: str, artifact_dir: Path, run_dir: Path) -> str:
    """How an artefact names its base: the packaged-model name or hub id as configured; a local
    directory inside the run directory as a path relative to the artefact (`../base`); any other
    local directory (the user's own) as its absolute path."""
    if models.is_packaged(configured):
        return configured
    local = Path(loaded_from)
    if not local.is_dir():
        return configured  # a hub id
    local = local.resolve()
    if local.is_relative_to(run_dir.resolve()):
        return os.path.relpath(local, artifact_dir.resolve())
    return str(local)


def resolve_base(artifact_dir: Path, reference: str) -> str:
    """What `from_pretrained` needs for an artefact's base (see `base_reference`)."""
    if models.is_packaged(reference):
        return models.resolve(reference)
    candidate = Path(artifact_dir) / reference
    if not Path(reference).is_absolute() and candidate.is_dir():
        return str(candidate.resolve())
    return reference


def save_artifact(path: Path, student: Any, tokenizer: Any, cfg: TrainConfig, base_model: str,
                  extra: dict[str, Any] | None = None, *, run_dir: Path | None = None) -> Path:
    """Write adapter + heads + tokenizer + config + metadata + model card to `path` (created).

    `base_model` is where the base was loaded from; `run_dir` (default: `path`'s parent) decides
    which local bases are named relative to the artefact.
    """
    from trainer.card import write_model_card

    path.mkdir(parents=True, exist_ok=True)
    reference = base_reference(cfg.model.base, base_model, path, run_dir or path.parent)
    student.lm.save_pretrained(path)
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = reference  # never an absolute path into the run dir
    (path / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    torch.save({"heads": student.heads_state(), "config": cfg.to_dict()}, path / HEADS_FILE)
    tokenizer.save_pretrained(path)
    (path / CONFIG_FILE).write_text(cfg.to_yaml(), encoding="utf-8")
    meta = {"base_model": reference, **(extra or {})}
    packaged = models.manifest(Path(base_model))  # None unless a pulled packaged model
    if packaged:
        meta["base_packaged"] = {k: packaged[k] for k in ("hub_id", "quantization", "gguf_sha256", "packages")}
    (path / ARTIFACT_FILE).write_text(json.dumps(meta, indent=1))
    write_model_card(path)
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
                    state: TrainState, keep: int, extra: dict[str, Any] | None = None) -> Path:
    """All ranks call this at the same step; rank 0 writes the shared parts, each rank its RNG."""
    root = run_dir / "checkpoints"
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-step-{state.step:08d}"
    if ctx.main:
        shutil.rmtree(tmp, ignore_errors=True)
        save_artifact(tmp, student, tokenizer, cfg, base_model, {"step": state.step, **(extra or {})},
                      run_dir=run_dir)
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
    cfg = load_config(cfg_file, env={})  # the run's config as saved: no environment, no overrides
    return cfg, json.loads(meta_file.read_text())


def load_for_inference(path: Path, device: torch.device) -> tuple[Any, Any, TrainConfig, dict[str, Any]]:
    """(base model + adapter in eval mode, tokenizer, config, metadata). Heads are not loaded."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.model import load_tokenizer, precision_plan

    cfg, meta = read_artifact_config(path)
    plan = precision_plan(cfg.model.precision, device)
    base = AutoModelForCausalLM.from_pretrained(resolve_base(path, meta["base_model"]), dtype=plan.load_dtype)
    model = PeftModel.from_pretrained(base, str(path)).to(device)
    model.eval()
    return model, load_tokenizer(str(path)), cfg, meta
