"""Against the real Neo4j: streaming MAGs, and evaluation results stored as EvalRun nodes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from magdi.store.eval_runs import EvalRuns
from trainer.data import MAGStream, make_loader
from trainer.evaluate import DecodeOptions, EvalItem, evaluate, split_debates
from trainer.graphs import GraphSpec
from trainer.sources import JsonlSource, Neo4jSource


def _graphs(stream: MAGStream) -> dict[str, object]:
    return {g.debate_id: g for g in stream}


def test_streaming_from_neo4j_yields_the_same_graphs_as_jsonl(store, neo4j_server, synth, make_debate, write_jsonl,
                                                              tokenizer) -> None:
    debates = [synth(i, rounds=2 + i % 2, absent_last=i % 3 == 0) for i in range(9)]
    debates += [make_debate(100 + i, dataset="gsm8k") for i in range(3)]
    debates += [synth(50, dataset="other")]
    store.write_debates(debates)
    path = write_jsonl(debates)
    spec = GraphSpec()
    kwargs = {"split": "train", "fractions": [0.7, 0.0, 0.3], "shuffle_buffer": 1}
    from_db = _graphs(MAGStream(Neo4jSource(neo4j_server, dataset="gsm8k", batch_size=4), tokenizer, spec, **kwargs))
    from_file = _graphs(MAGStream(JsonlSource(path, dataset="gsm8k"), tokenizer, spec, **kwargs))
    assert from_db.keys() == from_file.keys() and 0 < len(from_db) < 12
    for key, a in from_db.items():
        b = from_file[key]
        assert a.keys() == b.keys()
        for attr in a.keys():
            va, vb = a[attr], b[attr]
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, (key, attr)


def test_each_loader_worker_opens_its_own_driver_and_reads_its_shard(store, neo4j_server, synth, tokenizer) -> None:
    debates = [synth(i) for i in range(7)]
    store.write_debates(debates)
    stream = MAGStream(Neo4jSource(neo4j_server, batch_size=3), tokenizer, GraphSpec(), split=None)
    loader = make_loader(stream, batch_size=2, pad_id=tokenizer.pad_token_id, num_workers=2)
    seen = [debate_id for batch in loader for debate_id in batch.debate_id]
    assert sorted(seen) == sorted(d.id for d in debates)  # every MAG once, none twice


def test_eval_writes_eval_json_and_an_evalrun_linked_to_each_question(store, trained_run, synth, tmp_path) -> None:
    cfg, result, _ = trained_run
    questions = [synth(i).question for i in range(3)]
    store.write_debates([synth(0)])  # one question already stored, two created by the run
    report = evaluate(result.artifact_dir, [EvalItem(q, 120.0) for q in questions],
                      opts=DecodeOptions(max_new_tokens=8, batch_size=2), dataset="gsm8k", split="test",
                      out_dir=tmp_path, store=store)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["id"] == report.id and saved["n"] == 3 and 0.0 <= saved["accuracy"] <= 1.0
    assert saved["mean_output_tokens"] <= 8 and saved["token_ratio"] == 120.0 / saved["mean_output_tokens"]
    stored = EvalRuns(store).get(report.id)
    run = stored["run"]
    for key in ("model", "adapter_path", "config_json", "dataset", "split", "accuracy", "mean_output_tokens",
                "token_ratio", "n", "created_at"):
        assert key in run, key
    assert json.loads(run["config_json"])["objective"] == cfg.objective
    items = {i["question_id"]: i for i in stored["items"]}
    assert items.keys() == {q.id for q in questions}
    for row in saved["items"]:
        assert items[row["question_id"]]["predicted"] == row["predicted"]
        assert items[row["question_id"]]["correct"] == row["correct"]


def test_cli_eval_on_the_held_out_split_stores_the_run(neo4j_env, store, trained_run, tmp_path) -> None:
    import typer

    from trainer.cli import register

    app = typer.Typer()
    register(app)
    cfg, result, _ = trained_run
    args = ["eval", "--adapter", str(result.artifact_dir), "--split", "test", "--limit", "3", "--max-new-tokens", "6",
            "--out", str(tmp_path)]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["split"] == "test" and report["n"] == 3 and report["token_ratio"] is not None
    assert all(item["debate_tokens"] for item in report["items"])  # the test questions' own debates
    # the held-out MAGs scored are those of the --limit questions (the default of --score-limit)
    chosen, everything = split_debates(cfg, "test", limit=3), split_debates(cfg, "test")
    assert len(everything) > len(chosen) and 0 < report["likelihood"]["student"]["mags"] <= len(chosen)
    assert EvalRuns(store).get(report["id"])["run"]["n"] == 3
    assert Path(report["adapter_path"]) == result.artifact_dir.resolve()
