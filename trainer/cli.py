"""`magdi train` and `magdi eval`: thin commands over `trainer.train` and `trainer.evaluate`.

    magdi train --config configs/trainer/tiny-cpu.yaml --set data.source=jsonl:mags.jsonl
    magdi eval --adapter runs/tiny-cpu/adapter --split test --greedy
    magdi eval --adapter runs/tiny-cpu/adapter --data data/gsm8k/test.jsonl --format gsm8k --sample --k 5

Only typer and the standard library are imported here: torch and transformers load inside the
commands, so `magdi --help` stays fast and images without the trainer extra still work.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

log = logging.getLogger(__name__)


def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="YAML recipe, e.g. configs/trainer/tiny-cpu.yaml"),
    set_: list[str] = typer.Option([], "--set", help="override a key: --set optim.lr=1e-4 (repeatable)"),
) -> None:
    """Distil MAGs into a student (LoRA + GCN + ranking); resumes from the latest checkpoint."""
    from magdi.cli.common import user_errors
    from trainer.config import load_config
    from trainer.train import train

    with user_errors():
        cfg = load_config(config, set_)
        result = train(cfg)
    typer.secho(f"{result.action}: {result.output_dir}", err=True, fg=typer.colors.CYAN)
    # the summary exactly as train_summary.json holds it, plus where things are
    typer.echo(json.dumps({"output_dir": str(result.output_dir), "adapter": str(result.artifact_dir),
                           "summary_file": str(result.output_dir / "train_summary.json"), **result.summary},
                          indent=1))


def eval_command(
    adapter: Path = typer.Option(..., "--adapter", help="artefact directory written by `magdi train` (…/adapter)"),
    data: Path | None = typer.Option(None, "--data", help="benchmark file (with --format)"),
    fmt: str | None = typer.Option(None, "--format", help="gsm8k, strategyqa, ecqa, aqua, arc, math, jsonl, auto"),
    dataset: str | None = typer.Option(None, "--dataset", help="dataset name stored on the questions"),
    split: str | None = typer.Option(None, "--split", help="held-out split of the training source: val or test"),
    greedy: bool = typer.Option(True, "--greedy/--sample", help="greedy decoding, or sampling (T 0.7, top-p 0.9, top-k 50)"),
    k: int = typer.Option(1, "--k", help="samples per question; > 1 = self-consistency (needs --sample)"),
    limit: int | None = typer.Option(None, "--limit", help="evaluate the first N questions"),
    max_new_tokens: int = typer.Option(600, "--max-new-tokens"),
    batch_size: int = typer.Option(8, "--batch-size"),
    seed: int = typer.Option(42, "--seed"),
    out: Path | None = typer.Option(None, "--out", help="where eval.json goes (default: the run's output dir)"),
    neo4j: bool = typer.Option(True, "--neo4j/--no-neo4j", help="also store an EvalRun in Neo4j (MAGDI_NEO4J_*)"),
    compare_base: bool = typer.Option(False, "--compare-base", help="also run the base model alone (adapter off) "
                                      "on the same questions with the same prompt, side by side"),
    likelihood: bool = typer.Option(True, "--likelihood/--no-likelihood", help="with --split: also score the "
                                    "held-out MAGs' teacher answers (NLL per token, preference accuracy)"),
    score_limit: int | None = typer.Option(None, "--score-limit", help="with --split: score the held-out MAGs of "
                                           "the first N questions (default: the --limit questions); cheap next to "
                                           "generation, so it can cover more questions"),
) -> None:
    """Generate with the student on a held-out split or a benchmark file; write eval.json (+ Neo4j)."""
    from magdi.cli.common import USER_ERRORS, fail

    if data is not None and split is not None:
        raise fail("give either --data FILE --format F or --split, not both")
    if data is not None and fmt is None:
        raise fail("--data needs --format (or --format auto)")
    if data is None and split not in (None, "val", "test"):
        raise fail(f"--split must be val or test, got {split!r} (train questions are not held out)")
    from magdi.settings import Neo4jNotConfigured
    from magdi.store.connection import Neo4jUnavailable
    from trainer.checkpoint import read_artifact_config
    from trainer.evaluate import (
        DecodeOptions,
        evaluate,
        items_from_debates,
        items_from_file,
        split_selections,
        training_debate_tokens,
    )
    from trainer.sources import DataError

    try:
        opts = DecodeOptions(greedy=greedy, k=k, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
        cfg, _ = read_artifact_config(adapter)
        # the run directory the adapter sits in (wherever it was moved), else the adapter itself
        out_dir = out or (adapter.parent if (adapter.parent / "train_summary.json").is_file() else adapter)
        if data is not None:
            from magdi.datasets import DatasetError

            try:
                items = items_from_file(data, fmt or "auto", dataset=dataset, limit=limit)
            except DatasetError as exc:
                raise DataError(str(exc)) from None
            try:
                baseline = training_debate_tokens(cfg)
            except (DataError, Neo4jNotConfigured, Neo4jUnavailable) as exc:
                log.warning("no debate token baseline (%s); token_ratio will be null", exc)
                baseline = None
            name, split_name, debates = items[0].question.dataset, f"file:{data.name}", None
        else:
            split_name = split or "test"
            scored = limit if score_limit is None else score_limit  # the documented default
            generated, debates = split_selections(cfg, split_name, [limit, scored])  # type: ignore[arg-type]
            items = items_from_debates(generated)
            baseline, name = None, dataset or cfg.data.dataset or items[0].question.dataset
        kwargs = {"opts": opts, "dataset": name, "split": split_name, "out_dir": out_dir, "baseline_tokens": baseline,
                  "compare_base": compare_base, "debates": debates if likelihood else None}
        if neo4j:
            from magdi.store.open import open_store

            with open_store() as store:
                report = evaluate(adapter, items, store=store, **kwargs)
        else:
            report = evaluate(adapter, items, **kwargs)
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    for warning in report.warnings:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    summary = {"id": report.id, "n": report.n, "accuracy": report.accuracy, "accuracy_ci95": report.accuracy_ci95,
               "mean_output_tokens": report.mean_output_tokens, "token_ratio": report.token_ratio,
               "prompt_format": report.prompt_format, "eval_json": str(Path(out_dir) / "eval.json")}
    if report.base is not None:
        summary["base"] = {k: v for k, v in report.base.items() if k != "items"}
    if report.likelihood:
        summary["likelihood"] = report.likelihood
    typer.echo(json.dumps(summary, indent=1))


def register(app: typer.Typer) -> None:
    """Add `train` and `eval` to the main `magdi` CLI."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
