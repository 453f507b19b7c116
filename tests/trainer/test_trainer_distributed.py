"""DDP on CPU: two gloo processes train together and end with identical weights."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from trainer.config import TrainConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: TrainConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from trainer.train import train

    result = train(cfg)
    digest = hashlib.sha256()  # of this rank's own weights after training: DDP must keep them equal
    for name, p in sorted(result.student.named_parameters()):
        if p.requires_grad:
            digest.update(name.encode() + p.detach().numpy().tobytes())
    Path(out, f"rank{rank}.json").write_text(json.dumps({"steps": result.steps, "history": result.history,
                                                         "weights": digest.hexdigest()}))


@pytest.mark.slow
def test_two_gloo_processes_train_in_lockstep(tiny_config, synth, write_jsonl, tmp_path) -> None:
    path = write_jsonl([synth(i) for i in range(10)])
    cfg = tiny_config(path, "optim.batch_size=1", "optim.grad_accum=2", "optim.max_steps=3", "run.save_every=2")
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0]["steps"] == reports[1]["steps"] == 3
    assert reports[0]["weights"] == reports[1]["weights"]
    assert reports[0]["history"] == reports[1]["history"]  # logged means are all-reduced over ranks
    out = Path(cfg.run.output_dir)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    ckpt = out / "checkpoints" / "step-00000002"
    assert (ckpt / "rng-0.pt").is_file() and (ckpt / "rng-1.pt").is_file()
