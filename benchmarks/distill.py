"""Does distillation teach the student anything? The comparison behind `benchmarks/student.py` (CPU)
and `benchmarks/method_gpu.py` (one GPU call).

One run, one set of MAGs, one hash split, one step budget and one seed for every arm. Each trained
arm is a fresh LoRA student on the same base, trained by `trainer.train.train` exactly as `magdi
train` trains it, then evaluated in the same process on the same held-out MAGs and questions:

- `nll_per_token`: mean NLL per answer token of the distinct correct teacher answers (lower = the
  student writes more like the correct teachers);
- `preference_accuracy`: share of distinct correct x incorrect answer pairs of one MAG where the
  correct one has the higher mean log-likelihood per token, with a bootstrap interval over MAGs;
- `node_accuracy`: the GCN's held-out node accuracy where the arm has a GCN, beside the share of
  the majority label (what a constant guess gets);
- greedy accuracy and mean generated tokens on the first K held-out questions, and the token
  ratio: the teachers' generated tokens in the debate of the same question / the student's.

See `trainer/heldout.py` for how answers are scored (whole, each distinct text once).
"""

from __future__ import annotations

import gc
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from magdi import models
from magdi.formats.jsonl import iter_file
from magdi.mag import Debate
from magdi.prompts import resolve_kind
from trainer.config import TrainConfig, load_config
from trainer.evaluate import DecodeOptions, generate, items_from_debates, score
from trainer.graphs import GraphSpec
from trainer.heldout import score_answers
from trainer.model import load_tokenizer, precision_plan
from trainer.sources import split_of

REPO = Path(__file__).resolve().parents[1]
DATA_NOTE = ("MAGs: ReConcile debates of the SIMULATED teacher panel, which replays four real models' recorded "
             "solutions; those exist for the 1,319 GSM8K *test* questions only, so the training and the held-out "
             "split both come from GSM8K test questions (split by a hash of the question id).")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...] = ()
    what: str = ""

    @property
    def trains(self) -> bool:
        return self.name != "base"


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("base", (), "the pretrained student, no training"),
    Arm("sft-single", ("objective=sft-single",), "NLL on the strongest teacher's correct round-0 answers"),
    Arm("sft-multi", ("objective=sft-multi",), "NLL on every correct node"),
    Arm("magdi", ("objective=magdi", "mode=end_to_end"), "L+ + L_I + L-, every term reaches LoRA"),
    Arm("magdi-reference", ("objective=magdi", "mode=reference"), "as dinobby/MAGDi: frozen GCN features (docs/method.md D1)"),
    Arm("magdi-no-gcn", ("objective=magdi", "loss.use_gcn=false"), "magdi without L_I"),
    Arm("magdi-no-rank", ("objective=magdi", "loss.use_ranking=false"), "magdi without L-"),
    # the paper's open questions (docs/trainer.md, Ablations)
    Arm("rounds-1", ("objective=magdi", "data.max_rounds=1"), "magdi on round 0 only (no discussion)"),
    Arm("rounds-2", ("objective=magdi", "data.max_rounds=2"), "magdi on rounds 0-1"),
    Arm("no-edges", ("objective=magdi", "data.use_edges=false"), "magdi, GCN on an empty edge set"),
    Arm("teachers-1", ("objective=magdi", "data.agents=verifier-175b"), "magdi on one teacher's nodes"),
    Arm("teachers-2", ("objective=magdi", "data.agents=verifier-175b,finetuned-175b"), "magdi on two teachers'"),
    Arm("labels-agent-final", ("objective=magdi", "data.label_source=agent_final"), "labels: the agent's final answer"),
    Arm("labels-team", ("objective=magdi", "data.label_source=team"), "labels: the team answer"),
    # budget switches: the change tried when magdi does not beat the baselines (docs/benchmarks.md)
    Arm("magdi-correct-mags", ("objective=magdi", "data.keep_without_correct=false"),
        "magdi on the MAGs with a correct answer only (sft-multi's data)"),
    Arm("magdi-clip-per-group", ("objective=magdi", "optim.clip_per_group=true"),
        "magdi, LoRA and head gradients clipped separately"),
)}
MAIN_ARMS = ("base", "sft-single", "sft-multi", "magdi", "magdi-reference", "magdi-no-gcn", "magdi-no-rank")
DEFAULT_ARMS = (*MAIN_ARMS, "magdi-correct-mags")


@dataclass(frozen=True)
class Size:
    """Everything that sizes a run; every arm gets the same."""

    student: str = "smollm2-135m-instruct"
    recipe: str = "configs/trainer/smollm2-cpu.yaml"
    overrides: tuple[str, ...] = ()
    """`--set` values on top of the recipe, for every arm (the step budget, lengths, precision)."""
    questions: int = 400
    """GSM8K test questions debated when the MAGs are generated here (first N of the file)."""
    rounds: int = 2
    """Discussion rounds of those debates."""
    heldout_fraction: float = 0.2
    salt: str = "magdi"
    score_mags: int | None = 40
    """Held-out MAGs scored (None = all of the split)."""
    gen_questions: int | None = 16
    """Held-out questions generated from (K; None = all of the split)."""
    max_new_tokens: int = 160
    gen_batch: int = 16
    score_mags_per_forward: int = 2

    @property
    def fractions(self) -> list[float]:
        return [1.0 - self.heldout_fraction, 0.0, self.heldout_fraction]


@dataclass
class Split:
    salt: str
    fractions: list[float]
    train: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    """question ids (`Question.id`), file order"""
    held_out_qids: list[str] = field(default_factory=list)
    """the dataset's own question ids of the held-out split"""


def split_mags(debates: list[Debate], size: Size) -> tuple[Split, list[Debate]]:
    """The hash split of the MAGs' questions (recorded), and the held-out MAGs in file order."""
    split = Split(size.salt, size.fractions)
    held: list[Debate] = []
    for debate in debates:
        q = debate.question
        if split_of(q.id, size.fractions, size.salt) == "train":
            split.train.append(q.id)
        else:
            split.held_out.append(q.id)
            split.held_out_qids.append(q.qid)
            held.append(debate)
    return split, held


def arm_config(size: Size, arm: Arm, mags: Path, out: Path) -> TrainConfig:
    return load_config(REPO / size.recipe, [
        f"model.base={size.student}", f"data.source=jsonl:{mags}", "data.job_id=null", "data.dataset=null",
        f"data.split_fractions=[{', '.join(map(str, size.fractions))}]", f"data.split_salt={size.salt}",
        f"run.output_dir={out / arm.name}", "run.progress=false", "run.tensorboard=false", "run.save_every=0",
        "run.resume=false", *size.overrides, *arm.overrides], env={})


def evaluate_arm(lm: Any, tokenizer: Any, cfg: TrainConfig, kind: str, held: list[Debate], size: Size,
                 device: torch.device, student: Any = None) -> dict[str, Any]:
    """The held-out metrics of one model (a trained student's LM, or the base)."""
    spec = GraphSpec.from_config(cfg, prompt_format=kind)
    t0 = time.monotonic()
    likelihood = score_answers(lm, tokenizer, held[: size.score_mags], spec, device, student=student,
                               mags_per_forward=size.score_mags_per_forward, desc="score")
    t1 = time.monotonic()
    items = items_from_debates(held)[: size.gen_questions]  # None = all
    opts = DecodeOptions(greedy=True, max_new_tokens=size.max_new_tokens, batch_size=size.gen_batch)
    lm.eval()
    generated = score(items, generate(lm, tokenizer, [it.question for it in items], opts, device,
                                      prompt_format=kind, desc="generate"), opts)
    t2 = time.monotonic()
    gen = {k: generated[k] for k in ("n", "correct", "accuracy", "accuracy_ci95", "mean_output_tokens",
                                     "mean_debate_tokens", "token_ratio")}
    gen["examples"] = [{k: r[k] for k in ("qid", "gold", "predicted", "output_tokens", "text")}
                       for r in generated["items"][:2]]
    return {"likelihood": likelihood, "generation": gen,
            "seconds": {"score": round(t1 - t0, 1), "generate": round(t2 - t1, 1)}}


def run(size: Size, arms: list[str], out: Path, *, mags: Path | None = None, deadline_s: float | None = None,
        label: str = "") -> dict[str, Any]:
    """Run the arms on one set of MAGs; write `results.json` and `table.md` to `out`, return the results."""
    from trainer.train import train

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    mags_info: dict[str, Any] = {}
    if mags is None:
        from benchmarks.mags import generate_mags, gsm8k_questions

        made = generate_mags(gsm8k_questions(size.questions), out / "mags.jsonl", rounds=size.rounds)
        mags, mags_info = made.path, {"generated": True, "seconds": round(made.seconds, 1), "rounds": size.rounds}
    debates = list(iter_file(mags))
    split, held = split_mags(debates, size)
    (out / "split.json").write_text(json.dumps(asdict(split), indent=1), encoding="utf-8")
    mags_info.update(path=str(mags), mags=len(debates), train_questions=len(split.train),
                     held_out_questions=len(split.held_out))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base_dir = models.resolve(size.student)  # a packaged model's directory; a hub id or directory as given
    tokenizer = load_tokenizer(base_dir)
    results: dict[str, Any] = {
        "label": label, "date": datetime.now(UTC).isoformat(timespec="seconds"), "student": size.student,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or 'x86'}, "
        f"{torch.get_num_threads()} threads)", "size": asdict(size), "data": mags_info, "note": DATA_NOTE,
        "split_file": str(out / "split.json"), "arms": {}}
    longest = 0.0  # the slowest arm so far: an arm that would not finish before the deadline is skipped
    for name in arms:
        arm = ARMS[name]
        if deadline_s is not None and time.monotonic() - started + longest > deadline_s:
            results["arms"][name] = {"what": arm.what, "skipped": f"would not fit the time budget ({deadline_s:.0f} s)"}
            continue
        cfg = arm_config(size, arm, mags, out / "arms")
        kind = resolve_kind(cfg.model.prompt_format, tokenizer)
        row: dict[str, Any] = {"what": arm.what, "overrides": list(arm.overrides)}
        t0 = time.monotonic()
        result = None
        if arm.trains:
            result = train(cfg)
            student, lm = result.student, result.student.lm
            summary = result.summary
            row["train"] = {"steps": result.steps, "seconds": summary["seconds"], "data": summary["data"],
                            "strongest_agent": summary["strongest_agent"], "last_step": summary["last_step"],
                            "precision": summary["precision"]}
        else:
            from transformers import AutoModelForCausalLM

            student = None
            lm = AutoModelForCausalLM.from_pretrained(base_dir, dtype=precision_plan(cfg.model.precision, device).load_dtype)
            lm = lm.to(device).eval()
        row.update(evaluate_arm(lm, tokenizer, cfg, kind, held, size, device, student=student))
        row["seconds_total"] = round(time.monotonic() - t0, 1)
        longest = max(longest, row["seconds_total"])
        results["arms"][name] = row
        log.info("%s: %s", name, {k: row["likelihood"][k] for k in ("nll_per_token", "preference_accuracy")})
        del student, lm  # the next arm starts from a fresh base
        result = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    results["seconds"] = round(time.monotonic() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "table.md").write_text(table(results) + "\n", encoding="utf-8")
    return results


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The arms side by side (markdown)."""
    lines = ["| arm | steps | train s | NLL/token (correct) | preference acc. [95% CI] | GCN node acc. (majority) "
             "| greedy acc. | gen. tokens | token ratio |", "|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for name, row in results["arms"].items():
        if "skipped" in row:
            lines.append(f"| {name} | skipped: {row['skipped']} |||||||| ")
            continue
        like, gen, tr = row["likelihood"], row["generation"], row.get("train", {})
        ci = like.get("preference_ci95")
        node = (f"{like['node_accuracy']:.3f} ({like['node_majority']:.3f})" if "node_accuracy" in like else "-")
        lines.append(
            f"| {name} | {tr.get('steps', 0)} | {tr.get('seconds', 0):.0f} | {_f(like['nll_per_token'], 4)} "
            f"| {_f(like['preference_accuracy'])}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" | {node} "
            f"| {gen['correct']}/{gen['n']} | {_f(gen['mean_output_tokens'], 1)} | {_f(gen['token_ratio'], 2)} |")
    arms = [r for r in results["arms"].values() if "skipped" not in r]
    if arms:
        like, gen = arms[0]["likelihood"], arms[0]["generation"]
        d = results["data"]
        lines.append("")
        lines.append(f"{d['mags']} MAGs ({d['train_questions']} train / {d['held_out_questions']} held-out questions); "
                     f"scored: {like['mags']} held-out MAGs, {like['distinct_texts']} distinct answers, "
                     f"{like['pairs']} distinct pairs in {like['mags_with_pairs']} MAGs; generated: {gen['n']} "
                     f"questions, greedy, at most {results['size']['max_new_tokens']} new tokens. "
                     f"{results['device']}, {results.get('seconds', 0):.0f} s in all.")
    return "\n".join(lines)
