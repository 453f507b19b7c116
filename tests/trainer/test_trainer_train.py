"""Training runs on a tiny model: learning, artefacts, exact resume, objectives and modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import save_artifact
from trainer.data import MAGCollator
from trainer.graphs import GraphSpec, MAGEncoder
from trainer.model import build_student, load_tokenizer
from trainer.train import lr_factor, train

ALL_LINEAR = "lora.target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def _evaluate(cfg, base: str, adapter: Path | None, debates) -> tuple[float, float]:
    """(NLL, node accuracy) of a student on `debates`, in eval mode; no adapter = before training."""
    from peft import load_peft_weights, set_peft_model_state_dict

    tokenizer = load_tokenizer(base)
    torch.manual_seed(cfg.run.seed)
    student, _ = build_student(cfg, base, torch.device("cpu"))
    if adapter is not None:
        set_peft_model_state_dict(student.lm, load_peft_weights(str(adapter)))
        student.load_heads_state(torch.load(adapter / "heads.pt", weights_only=False)["heads"])
    student.eval()
    enc = MAGEncoder(tokenizer, GraphSpec())
    batch = MAGCollator(tokenizer.pad_token_id)([enc.encode(d) for d in debates])
    with torch.no_grad():
        out = student(batch)
    return float(out["nll"]), float(out["node_acc"])


def test_a_few_steps_lower_the_nll_and_beat_chance_at_node_classification(tiny_config, synth, write_jsonl) -> None:
    debates = [synth(i) for i in range(8)]
    cfg = tiny_config(write_jsonl(debates), ALL_LINEAR, "lora.r=8", "lora.alpha=16", "loss.gcn_hidden=64",
                      "loss.gcn_dropout=0.1", "optim.batch_size=4", "optim.max_steps=40")
    result = train(cfg)
    base = str(Path(cfg.run.output_dir) / "base")
    nll0, acc0 = _evaluate(cfg, base, None, debates)
    nll1, acc1 = _evaluate(cfg, base, result.artifact_dir, debates)
    labels = [r.label for d in debates for r in d.responses]
    chance = max(labels.count(0), labels.count(1)) / len(labels)
    assert nll1 < nll0 - 0.1
    assert acc1 > chance + 0.1, (acc0, acc1, chance)


def test_saved_adapter_loads_with_peft_and_reproduces_the_logits(make_student, tiny_base, tokenizer, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    student = make_student()
    student.eval()
    ids = torch.tensor([tokenizer("[INST] ### Question: Ann has 3 apples.[/INST] ### Answer:")["input_ids"]])
    with torch.no_grad():
        expected = student.lm(input_ids=ids).logits
    save_artifact(tmp_path / "adapter", student, tokenizer, student.cfg, str(tiny_base))
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), tmp_path / "adapter").eval()
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    base_only = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    with torch.no_grad():
        assert not torch.allclose(base_only(input_ids=ids).logits, got, atol=1e-3)  # the adapter matters
    heads = torch.load(tmp_path / "adapter" / "heads.pt", weights_only=False)["heads"]
    fresh = make_student(seed=1)
    fresh.load_heads_state(heads)
    for a, b in zip(fresh.gcn.parameters(), student.gcn.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_continues_the_same_loss_curve(tiny_config, synth, write_jsonl) -> None:
    path = write_jsonl([synth(i) for i in range(8)])
    common = ("optim.batch_size=2", "optim.grad_accum=2", "optim.max_steps=6", "optim.warmup_steps=2",
              "lora.dropout=0.1", "data.shuffle_buffer=3")
    straight = train(tiny_config(path, *common, out="straight")).history
    cfg = tiny_config(path, *common, "run.save_every=3", out="resumed")
    first = train(cfg, stop_after=3)  # "preempted" mid-epoch, right after a checkpoint
    assert first.artifact_dir is None and len(first.history) == 3
    metrics_file = Path(cfg.run.output_dir) / "metrics.jsonl"
    with metrics_file.open("a") as fh:  # the process logged step 4, then died before checkpointing it
        fh.write(json.dumps({**first.history[-1], "step": 4}) + "\n")
    second = train(cfg)
    assert second.action == "resumed from step 3"
    assert [h["step"] for h in second.history] == [4, 5, 6]
    resumed = first.history + second.history
    for a, b in zip(straight, resumed, strict=True):
        for key in ("loss", "nll", "node", "rank", "lr", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    metrics = (Path(cfg.run.output_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [1, 2, 3, 4, 5, 6]


def test_run_writes_the_artefact_logs_and_summary(trained_run) -> None:
    cfg, result, _ = trained_run
    out = Path(cfg.run.output_dir)
    adapter = result.artifact_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "heads.pt", "trainer_config.yaml",
                 "artifact.json", "tokenizer.json"):
        assert (adapter / name).is_file(), name
    assert any((out / "tb").iterdir())  # TensorBoard events
    assert len((out / "metrics.jsonl").read_text().splitlines()) == result.steps == 3
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["data"]["mags_used"] == result.stats.mags_used
    assert summary == result.summary and summary["action"] == "started"


def test_rerunning_a_finished_run_trains_nothing_and_starting_over_replaces_it(tiny_config, synth, write_jsonl,
                                                                                caplog) -> None:
    cfg = tiny_config(write_jsonl([synth(i) for i in range(6)]), "optim.max_steps=3", "run.save_every=1")
    out = Path(cfg.run.output_dir)
    first = train(cfg)
    steps = lambda: [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert first.action == "started" and steps() == [1, 2, 3]
    with caplog.at_level("WARNING"):
        again = train(cfg)
    assert again.action == "already finished" and again.history == [] and again.student is None
    assert "already finished" in caplog.text and "run.resume=false" in caplog.text
    assert again.summary == json.loads((out / "train_summary.json").read_text()) == first.summary
    assert steps() == [1, 2, 3]  # no step logged twice
    caplog.clear()
    with caplog.at_level("WARNING"):
        over = train(cfg.model_copy(update={"run": cfg.run.model_copy(update={"resume": False})}))
    assert over.action == "started" and "starting over" in caplog.text and steps() == [1, 2, 3]
    assert [h["loss"] for h in over.history] == pytest.approx([h["loss"] for h in first.history])


@pytest.mark.parametrize("objective", ["sft-single", "sft-multi"])
def test_sft_objectives_train_the_nll_only(tiny_config, synth, write_jsonl, objective: str) -> None:
    result = train(tiny_config(write_jsonl([synth(i) for i in range(8)]), f"objective={objective}", "optim.max_steps=2"))
    assert all("nll" in h and "node" not in h and "rank" not in h for h in result.history)
    if objective == "sft-single":
        acc = result.round0_accuracy
        assert result.strongest_agent == max(sorted(acc), key=lambda a: acc[a])


def test_reference_mode_trains(tiny_config, synth, write_jsonl) -> None:
    result = train(tiny_config(write_jsonl([synth(i) for i in range(6)]), "mode=reference", "optim.max_steps=2"))
    assert all(torch.isfinite(torch.tensor(h["loss"])) and "node" in h for h in result.history)


def test_linear_schedule_with_warmup() -> None:
    assert [round(lr_factor(s, 2, 6), 3) for s in range(7)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]


def test_the_loss_curve_on_a_fixed_seed_is_pinned(tiny_config, synth, write_jsonl) -> None:
    """Refactors of the loop (setup / fit / save) must not change a single number: every step's losses,
    learning rate and gradient norm of a seeded tiny run, computed on the code before the split into steps."""
    cfg = tiny_config(write_jsonl([synth(i) for i in range(8)]), "optim.batch_size=2", "optim.grad_accum=2",
                      "optim.max_steps=4", "optim.warmup_steps=1", "lora.dropout=0.1", "data.shuffle_buffer=3")
    history = train(cfg).history
    got = [[round(h[k], 7) for k in PINNED_KEYS] for h in history]
    assert len(got) == len(PINNED_CURVE)
    for step, (row, expected) in enumerate(zip(got, PINNED_CURVE, strict=True), start=1):
        assert row == pytest.approx(expected, rel=1e-6, abs=1e-6), (step, dict(zip(PINNED_KEYS, row, strict=True)))


PINNED_KEYS = ("loss", "nll", "node", "rank", "lr", "grad_norm")
PINNED_CURVE = [  # computed on the single-function loop (commit fd75c01), torch CPU fp32
    [7.0983915, 5.989747, 1.0104456, 0.9819853, 0.001, 2.9713452],
    [6.9970589, 5.9927034, 0.9077501, 0.9660503, 0.0006667, 2.9918022],
    [6.8635712, 5.9946232, 0.7799215, 0.8902637, 0.0003333, 1.3417892],
    [6.9477243, 5.9911842, 0.8720994, 0.8444068, 0.0, 3.0522952],
]
