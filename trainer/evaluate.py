"""Evaluate a trained student: generate, parse the continuation, score, count tokens (spec §6).

    magdi eval --adapter runs/tiny/adapter --split test --greedy
    magdi eval --adapter runs/m7b/adapter --data data/gsm8k/test.jsonl --format gsm8k --sample --k 5

Only the generated continuation is parsed (never the prompt or special tokens: D19), with the
project's one answer rule set (`magdi.answers`). Greedy and sampled decoding are separate,
seeded runs. The efficiency metric compares the student's generated tokens per question with
the teachers' generated tokens in the debates that produced the training data.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from magdi.answers import extract_answer, is_equivalent, majority_vote
from magdi.mag import Question
from trainer.config import TrainConfig
from trainer.data import debates_in_split
from trainer.graphs import format_question, prompt_text
from trainer.sources import DataError, Split, open_source

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
            raise ValueError(f"k: must be >= 1, got {self.k}")
        if self.greedy and self.k > 1:
            raise ValueError("k: self-consistency needs sampling (--sample); greedy samples would all agree")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")


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
    items: list[dict[str, Any]] = field(default_factory=list)


# -- questions -----------------------------------------------------------------------------------------
def items_from_split(cfg: TrainConfig, split: Split, *, limit: int | None = None,
                     neo4j_settings: object | None = None) -> list[EvalItem]:
    """Questions of the held-out `split` of the training source, with their debates' token counts."""
    d = cfg.data
    source = open_source(d.source, dataset=d.dataset, job_id=d.job_id, batch_size=d.neo4j_batch_size,
                         settings=neo4j_settings)
    by_question: dict[str, tuple[Question, list[int]]] = {}
    for debate in debates_in_split(source, split, d.split_fractions, d.split_salt):
        q = debate.question
        if q.gold_answer is None:
            continue
        if q.id not in by_question:
            if limit is not None and len(by_question) >= limit:
                continue
            by_question[q.id] = (q, [])
        by_question[q.id][1].append(debate.tokens_out)
    if not by_question:
        raise DataError(f"no questions with a gold answer in the {split} split of {source.describe()}")
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
def generate(model: Any, tokenizer: Any, questions: list[Question], opts: DecodeOptions,
             device: torch.device) -> list[list[tuple[str, int]]]:
    """Per question, k (continuation text, generated token count) pairs."""
    from transformers import GenerationConfig

    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sampling = {} if opts.greedy else {"temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k}
    gen_cfg = GenerationConfig(max_new_tokens=opts.max_new_tokens, do_sample=not opts.greedy,
                               num_return_sequences=opts.k, eos_token_id=eos, pad_token_id=pad, **sampling)
    results: list[list[tuple[str, int]]] = []
    for start in range(0, len(questions), opts.batch_size):
        chunk = questions[start:start + opts.batch_size]
        prompts = [bos + tokenizer(prompt_text(format_question(q)), add_special_tokens=False)["input_ids"] for q in chunk]
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
                n = row.index(eos) + 1 if eos in row else len(row)
                samples.append((tokenizer.decode(row[:n], skip_special_tokens=True), n))
            results.append(samples)
    return results


# -- the run ------------------------------------------------------------------------------------------------
def evaluate(adapter_dir: Path, items: list[EvalItem], *, opts: DecodeOptions, dataset: str, split: str,
             out_dir: Path | None = None, baseline_tokens: float | None = None, driver: Any = None,
             database: str | None = None) -> EvalReport:
    """Generate for every item, score, write `eval.json` to `out_dir` and (with a driver) an EvalRun.

    `baseline_tokens` is the per-question debate cost used when items carry none (file mode).
    """
    from trainer.checkpoint import load_for_inference

    if not items:
        raise DataError("nothing to evaluate: no questions")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, cfg, meta = load_for_inference(adapter_dir, device)
    generations = generate(model, tokenizer, [it.question for it in items], opts, device)
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
    report = EvalReport(
        id=f"eval-{uuid.uuid4().hex[:16]}", model=str(meta.get("base_model", cfg.model.base)),
        adapter_path=str(Path(adapter_dir).resolve()), dataset=dataset, split=split, decoding=asdict(opts),
        n=len(items), accuracy=correct / len(items), mean_output_tokens=sum(tokens) / len(tokens),
        mean_debate_tokens=mean_debate, token_ratio=(mean_debate / student) if mean_debate and student else None,
        created_at=datetime.now(UTC).isoformat(), items=rows)
    out_dir = Path(out_dir or adapter_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(asdict(report), indent=1, ensure_ascii=False), encoding="utf-8")
    log.info("accuracy %.4f on %d questions (%s), %.1f tokens/sample, ratio %s", report.accuracy, report.n,
             split, report.mean_output_tokens, report.token_ratio)
    if driver is not None:
        from trainer.results import eval_rows, save_eval_run

        run = {k: v for k, v in asdict(report).items() if k not in ("items", "decoding", "created_at")}
        run.update(config_json=json.dumps(cfg.to_dict()), decoding_json=json.dumps(asdict(opts)),
                   created_at=datetime.fromisoformat(report.created_at))
        run = {k: v for k, v in run.items() if v is not None}
        save_eval_run(driver, run, eval_rows([(it.question, r["predicted"], r["correct"], r["output_tokens"])
                                              for it, r in zip(items, rows, strict=True)]), database=database)
    return report
