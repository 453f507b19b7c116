"""Evaluate a trained student: generate, parse the continuation, score, count tokens (docs/method.md §6).

    magdi eval --adapter runs/tiny/adapter --split test --greedy
    magdi eval --adapter runs/m7b/adapter --data data/gsm8k/test.jsonl --format gsm8k --sample --k 5

Only the generated continuation is parsed (never the prompt or special tokens: D19), with the
project's one answer rule set (`magdi.answers`). The prompt is the one the student was trained
with (`artifact.json`'s prompt format, rendered by `trainer.graphs.StudentPrompt`). Greedy and
sampled decoding are separate, seeded runs. The efficiency metric compares the student's
generated tokens per question with the teachers' generated tokens in the debates that produced
the training data.

`compare_base` runs the same questions through the base model (adapter disabled, same prompt,
same decoding); with held-out MAGs (`--split`) both are also scored on the teachers' answers:
NLL per token of the correct answers and preference accuracy (how often a correct answer is
more likely, per token, than an incorrect one of the same MAG). Accuracy comes with its 95%
Wilson interval, and a warning when n is too small for the figure to mean much.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from magdi.answers import extract_answer, is_equivalent, majority_vote
from magdi.errors import UserError
from magdi.mag import Debate, Question
from magdi.prompts import REFERENCE
from magdi.store.graph_store import GraphStore
from trainer.config import TrainConfig
from trainer.data import debates_in_split
from trainer.graphs import GraphSpec, StudentPrompt
from trainer.heldout import score_answers
from trainer.sources import DataError, Split, open_source

SMALL_N = 30
"""Below this many questions an accuracy's 95% interval is wider than +-0.15: say so."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeOptions:
    """Decoding of one evaluation run; sampling defaults are the paper's (§6.2)."""

    greedy: bool = True
    k: int = 1
    """Samples per question; > 1 = self-consistency (majority vote of the parsed answers)."""
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    max_new_tokens: int = 600
    batch_size: int = 8
    seed: int = 42

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"k: must be >= 1, got {self.k}")
        if self.greedy and self.k > 1:
            raise UserError("k: self-consistency needs sampling (--sample); greedy samples would all agree")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise UserError("max_new_tokens and batch_size must be >= 1")


@dataclass
class EvalItem:
    question: Question
    debate_tokens: float | None = None
    """Mean generated tokens (sum of tokens_out over responses) of this question's debates."""


@dataclass
class EvalReport:
    id: str
    model: str
    adapter_path: str
    dataset: str
    split: str
    decoding: dict[str, Any]
    n: int
    accuracy: float
    mean_output_tokens: float
    """Generated tokens per sample (up to and including EOS)."""
    mean_debate_tokens: float | None
    token_ratio: float | None
    """Teacher debate tokens per question / student tokens per question (k samples): > 1 means cheaper."""
    created_at: str
    accuracy_ci95: list[float] = field(default_factory=list)
    """95% Wilson interval of the accuracy over n questions."""
    prompt_format: str = REFERENCE
    base: dict[str, Any] | None = None
    """The base model without the adapter on the same questions (compare_base): accuracy, interval,
    mean output tokens, per-question predictions."""
    likelihood: dict[str, Any] | None = None
    """Held-out MAGs scored by student (and base): nll_per_token, preference_accuracy, nodes, pairs."""
    warnings: list[str] = field(default_factory=list)
    """What makes these figures weak (too few questions); `magdi eval` prints them."""
    items: list[dict[str, Any]] = field(default_factory=list)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sane at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def small_n_warning(n: int, correct: int) -> str | None:
    """A warning when n questions are too few for the accuracy to mean much (None otherwise)."""
    if n >= SMALL_N:
        return None
    low, high = wilson_interval(correct, n)
    return (f"only {n} questions: accuracy {correct / max(n, 1):.2f} has a 95% interval of {low:.2f}-{high:.2f}; "
            f"differences smaller than that mean nothing (evaluate {SMALL_N}+ questions for a usable figure)")


# -- questions ---------------------------------------------------------------------------------------------
def split_debates(cfg: TrainConfig, split: Split, *, limit: int | None = None,
                  neo4j_settings: object | None = None) -> list[Debate]:
    """The debates of the first `limit` questions (with a gold answer) of a held-out split."""
    return split_selections(cfg, split, [limit], neo4j_settings=neo4j_settings)[0]


def split_selections(cfg: TrainConfig, split: Split, limits: Sequence[int | None], *,
                     neo4j_settings: object | None = None) -> list[list[Debate]]:
    """`split_debates` for each of `limits`, from ONE pass over the split (`magdi eval` generates for
    `--limit` questions and scores the held-out MAGs of `--score-limit` questions)."""
    d = cfg.data
    source = open_source(d.source, dataset=d.dataset, job_id=d.job_id, batch_size=d.neo4j_batch_size,
                         settings=neo4j_settings)
    kept: list[list[Debate]] = [[] for _ in limits]
    questions: list[set[str]] = [set() for _ in limits]
    for debate in debates_in_split(source, split, d.split_fractions, d.split_salt):
        q = debate.question
        if q.gold_answer is None:
            continue
        for limit, chosen, seen in zip(limits, kept, questions, strict=True):
            if q.id in seen or limit is None or len(seen) < limit:
                seen.add(q.id)
                chosen.append(debate)
    if not all(kept):
        raise DataError(f"no questions with a gold answer in the {split} split of {source.describe()}")
    return kept


def items_from_debates(debates: list[Debate]) -> list[EvalItem]:
    """One item per question, with its debates' mean generated tokens (the cost the student replaces)."""
    by_question: dict[str, tuple[Question, list[int]]] = {}
    for debate in debates:
        by_question.setdefault(debate.question.id, (debate.question, []))[1].append(debate.tokens_out)
    return [EvalItem(q, sum(t) / len(t) if any(t) else None) for q, t in by_question.values()]


def items_from_file(path: Path, fmt: str, *, dataset: str | None = None, limit: int | None = None) -> list[EvalItem]:
    from magdi.datasets import load_questions

    return [EvalItem(q) for q in load_questions(path, fmt, dataset=dataset, limit=limit)]


def training_debate_tokens(cfg: TrainConfig, neo4j_settings: object | None = None) -> float | None:
    """Mean generated tokens of the training split's debates (the cost the student replaces)."""
    d = cfg.data
    source = open_source(d.source, dataset=d.dataset, job_id=d.job_id, batch_size=d.neo4j_batch_size,
                         settings=neo4j_settings)
    tokens = [db.tokens_out for db in debates_in_split(source, "train", d.split_fractions, d.split_salt)]
    return sum(tokens) / len(tokens) if tokens and any(tokens) else None


# -- generation -----------------------------------------------------------------------------------------
def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids: the tokenizer's, plus the model's generation config's (chat models end turns with them)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def generate(model: Any, tokenizer: Any, questions: list[Question], opts: DecodeOptions, device: torch.device,
             *, prompt_format: str = REFERENCE, desc: str = "generate") -> list[list[tuple[str, int]]]:
    """Per question, k (continuation text, generated token count) pairs; a progress bar per question."""
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    student = StudentPrompt(tokenizer, prompt_format)
    stops, pad = _stop_ids(model, tokenizer), tokenizer.pad_token_id
    sampling = {} if opts.greedy else {"temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k}
    gen_cfg = GenerationConfig(max_new_tokens=opts.max_new_tokens, do_sample=not opts.greedy,
                               num_return_sequences=opts.k, eos_token_id=stops, pad_token_id=pad, **sampling)
    results: list[list[tuple[str, int]]] = []
    with tqdm(total=len(questions), desc=desc, unit="q", dynamic_ncols=True) as bar:
        for start in range(0, len(questions), opts.batch_size):
            chunk = questions[start:start + opts.batch_size]
            prompts = [student.prompt_ids(q) for q in chunk]
            width = max(len(p) for p in prompts)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)  # left padding
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
            torch.manual_seed(opts.seed + start)  # reproducible samples for a given batch size
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
            continuation = out[:, width:].cpu()
            for i in range(len(chunk)):
                samples = []
                for row in continuation[i * opts.k:(i + 1) * opts.k].tolist():
                    n = next((j + 1 for j, t in enumerate(row) if t in stops), len(row))
                    samples.append((tokenizer.decode(row[:n], skip_special_tokens=True), n))
                results.append(samples)
            bar.update(len(chunk))
    return results


def score(items: list[EvalItem], generations: list[list[tuple[str, int]]], opts: DecodeOptions,
          baseline_tokens: float | None = None) -> dict[str, Any]:
    """Accuracy (with its interval), tokens and per-question rows of one model's generations."""
    rows, correct, tokens, debate_tokens = [], 0, [], []
    for item, samples in zip(items, generations, strict=True):
        q = item.question
        answers = [extract_answer(text, q.task, q.options) for text, _ in samples]
        predicted = answers[0] if opts.k == 1 else majority_vote(answers)
        ok = predicted is not None and is_equivalent(predicted, q.gold_answer, q.task, q.options)
        correct += ok
        n_tokens = [n for _, n in samples]
        tokens.extend(n_tokens)
        cost = item.debate_tokens if item.debate_tokens is not None else baseline_tokens
        if cost:
            debate_tokens.append((cost, sum(n_tokens)))
        rows.append({"question_id": q.id, "qid": q.qid, "gold": q.gold_answer, "predicted": predicted,
                     "correct": ok, "output_tokens": sum(n_tokens) / len(n_tokens), "debate_tokens": cost,
                     "samples": answers, "text": samples[0][0]})
    mean_debate = sum(c for c, _ in debate_tokens) / len(debate_tokens) if debate_tokens else None
    student = sum(s for _, s in debate_tokens) / len(debate_tokens) if debate_tokens else None
    return {"n": len(items), "correct": correct, "accuracy": correct / len(items),
            "accuracy_ci95": [round(x, 4) for x in wilson_interval(correct, len(items))],
            "mean_output_tokens": sum(tokens) / len(tokens), "mean_debate_tokens": mean_debate,
            "token_ratio": (mean_debate / student) if mean_debate and student else None, "items": rows}


# -- the run ------------------------------------------------------------------------------------------------
def evaluate(adapter_dir: Path, items: list[EvalItem], *, opts: DecodeOptions, dataset: str, split: str,
             out_dir: Path | None = None, baseline_tokens: float | None = None, store: GraphStore | None = None,
             compare_base: bool = False,
             debates: list[Debate] | None = None) -> EvalReport:
    """Generate for every item, score, write `eval.json` to `out_dir` and (with a store) an EvalRun.

    `baseline_tokens` is the per-question debate cost used when items carry none (file mode).
    `compare_base` also runs the base model alone on the same items; `debates` (held-out MAGs of
    the items' questions) adds the likelihood scores.
    """
    from trainer.card import write_model_card
    from trainer.checkpoint import load_for_inference

    if not items:
        raise DataError("nothing to evaluate: no questions")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, cfg, meta = load_for_inference(adapter_dir, device)
    kind = meta.get("prompt_format", REFERENCE)
    spec = GraphSpec.from_config(cfg, prompt_format=kind)
    passes = [("student", nullcontext)] + ([("base", model.disable_adapter)] if compare_base else [])
    results: dict[str, dict[str, Any]] = {}
    likelihood: dict[str, Any] = {}
    for who, context in passes:
        with context():
            generations = generate(model, tokenizer, [it.question for it in items], opts, device,
                                   prompt_format=kind, desc=f"generate ({who})")
            results[who] = score(items, generations, opts, baseline_tokens)
            if debates:
                likelihood[who] = score_answers(model, tokenizer, debates, spec, device,
                                                desc=f"score answers ({who})")
    mine = results["student"]
    base = None
    if compare_base:
        b = results["base"]
        base = {k: b[k] for k in ("accuracy", "accuracy_ci95", "correct", "mean_output_tokens", "token_ratio")}
        base["items"] = [{k: r[k] for k in ("question_id", "predicted", "correct", "output_tokens", "text")}
                         for r in b["items"]]
    report = EvalReport(
        id=f"eval-{uuid.uuid4().hex[:16]}", model=str(meta.get("base_model", cfg.model.base)),
        adapter_path=str(Path(adapter_dir).resolve()), dataset=dataset, split=split, decoding=asdict(opts),
        n=mine["n"], accuracy=mine["accuracy"], mean_output_tokens=mine["mean_output_tokens"],
        mean_debate_tokens=mine["mean_debate_tokens"], token_ratio=mine["token_ratio"],
        created_at=datetime.now(UTC).isoformat(), accuracy_ci95=mine["accuracy_ci95"], prompt_format=kind,
        base=base, likelihood=likelihood or None, items=mine["items"],
        warnings=[w for w in (small_n_warning(mine["n"], mine["correct"]),) if w])
    out_dir = Path(out_dir or adapter_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(asdict(report), indent=1, ensure_ascii=False), encoding="utf-8")
    if out_dir.resolve() in (Path(adapter_dir).resolve(), Path(adapter_dir).resolve().parent):
        write_model_card(Path(adapter_dir))
    log.info("accuracy %.4f on %d questions (%s), %.1f tokens/sample, ratio %s", report.accuracy, report.n,
             split, report.mean_output_tokens, report.token_ratio)
    for warning in report.warnings:
        log.info("warning: %s", warning)
    if store is not None:
        from magdi.store.eval_runs import EvalRuns, eval_rows

        run = {k: v for k, v in asdict(report).items()
               if k not in ("items", "decoding", "created_at", "base", "likelihood", "warnings")}
        run.update(config_json=json.dumps(cfg.to_dict()), decoding_json=json.dumps(asdict(opts)),
                   created_at=datetime.fromisoformat(report.created_at))
        if base is not None:
            run.update(base_accuracy=base["accuracy"], base_mean_output_tokens=base["mean_output_tokens"])
        if likelihood:
            run["likelihood_json"] = json.dumps(likelihood)
        run = {k: v for k, v in run.items() if v is not None}
        EvalRuns(store).save(run, eval_rows([(it.question, r["predicted"], r["correct"], r["output_tokens"])
                                             for it, r in zip(items, mine["items"], strict=True)]))
    return report
