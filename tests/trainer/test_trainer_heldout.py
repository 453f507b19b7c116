"""Held-out scoring (trainer.heldout): preference over distinct texts, whole answers, the metric's sign."""

from __future__ import annotations

import torch

from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from magdi.prompts import REFERENCE
from trainer.config import load_config
from trainer.data import MAGCollator
from trainer.evaluate import split_debates
from trainer.graphs import GraphSpec, MAGEncoder
from trainer.heldout import bootstrap_ci, score_answers
from trainer.model import load_tokenizer

CPU = torch.device("cpu")


def _replayed_debate() -> Debate:
    """Like the simulated panel: an agent that keeps its answer repeats its text, one that switches
    repeats another's. Two distinct correct-vs-incorrect texts hide behind 2 x 3 node pairs."""
    q = Question(dataset="toy", qid="r1", text="Ann has 4 apples and buys 3 more. How many apples now?",
                 task=TaskType.NUMBER, gold_answer="7")
    right = ("Ann starts with 4 apples. Then 4 + 3 = 7.", "7")
    wrong_a = ("Ann starts with 4 apples. Then 4 - 3 = 1.", "1")
    wrong_b = ("Ann buys 3 apples, so she has 3 apples and " + "counts them again, " * 30 + "so 3.", "3")
    cells = [("alice", 0, right), ("alice", 1, right), ("bob", 0, wrong_a), ("bob", 1, wrong_a),
             ("carol", 0, wrong_b), ("carol", 1, right)]
    responses = [Response(agent=a, round=r, reasoning=text, answer=ans, correct=ans == "7") for a, r, (text, ans) in cells]
    return Debate(question=q, panel=[Agent(name=n, model="m") for n in ("alice", "bob", "carol")],
                  responses=responses, edges=full_visibility_edges(responses), rounds_used=2)


def _mean_answer_loglik(model, tokenizer, debate: Debate, node: int) -> float:
    """What the metric should be, computed the plain way: HF's own loss with the prompt masked out."""
    data = MAGEncoder(tokenizer, GraphSpec(prompt_format=REFERENCE)).encode(debate)
    batch = MAGCollator(tokenizer.pad_token_id)([data])
    n = int(batch.length[node])
    ids = batch.input_ids[node: node + 1, :n]
    labels = ids.clone()
    labels[:, : int(batch.prompt_length[node])] = -100
    with torch.no_grad():
        return -float(model(input_ids=ids, labels=labels).loss)


def test_pairs_are_distinct_texts_of_one_mag_and_the_winner_is_the_likelier_answer(tiny_base) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    tokenizer = load_tokenizer(str(tiny_base))
    debate = _replayed_debate()
    out = score_answers(model, tokenizer, [debate], GraphSpec(prompt_format=REFERENCE), CPU)
    assert (out["nodes"], out["distinct_texts"], out["pairs"], out["mags_with_pairs"]) == (6, 3, 2, 1)

    ll = {i: _mean_answer_loglik(model, tokenizer, debate, i) for i in (0, 2, 4)}  # right, wrong_a, wrong_b
    wins = (ll[0] > ll[2]) + (ll[0] > ll[4])
    assert out["preference_accuracy"] == wins / 2
    data = MAGEncoder(tokenizer, GraphSpec(prompt_format=REFERENCE)).encode(debate)
    assert out["correct_tokens"] == int(data.length[0] - data.prompt_length[0])  # the answer and its EOS
    assert abs(out["nll_per_token"] + ll[0]) < 1e-4


def test_answers_are_scored_whole_whatever_the_training_cap(tiny_base) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    tokenizer = load_tokenizer(str(tiny_base))
    training_cap = GraphSpec(prompt_format=REFERENCE, max_length=40)  # what a CPU recipe trains on
    whole = score_answers(model, tokenizer, [_replayed_debate()], training_cap, CPU)
    cut = score_answers(model, tokenizer, [_replayed_debate()], training_cap, CPU, max_length=40)
    assert whole["truncated"] == 0 and cut["truncated"] > 0
    assert whole["correct_tokens"] > cut["correct_tokens"]


def test_training_on_correct_answers_raises_held_out_preference(tiny_config, synth, write_jsonl) -> None:
    """The metric's sign: a student trained on the correct answers prefers unseen correct answers."""
    from trainer.train import train

    cfg = tiny_config(write_jsonl([synth(i) for i in range(40)]), "objective=sft-multi", "optim.lr=1e-2",
                      "optim.max_steps=10", "data.split_fractions=[0.5, 0.0, 0.5]")
    result = train(cfg)
    tokenizer = load_tokenizer(str(result.output_dir / "base"))
    held_out = split_debates(cfg, "test")
    spec = GraphSpec.from_config(cfg, prompt_format=REFERENCE)
    trained = score_answers(result.student.lm, tokenizer, held_out, spec, CPU)
    with result.student.lm.disable_adapter():
        base = score_answers(result.student.lm, tokenizer, held_out, spec, CPU)
    assert trained["pairs"] == base["pairs"] >= 10
    assert trained["nll_per_token"] < base["nll_per_token"]
    assert trained["preference_accuracy"] > base["preference_accuracy"] + 0.2, (base, trained)  # 0.46 -> 0.83 here
    low, high = trained["preference_ci95"]
    assert low <= trained["preference_accuracy"] <= high
    assert "node_accuracy" not in trained  # no GCN in sft-multi


def test_a_magdi_student_also_reports_its_gcn_on_held_out_nodes(tiny_config, synth, write_jsonl) -> None:
    from trainer.train import train

    for mode in ("end_to_end", "reference"):
        cfg = tiny_config(write_jsonl([synth(i) for i in range(12)]), f"mode={mode}", "optim.max_steps=2",
                          "data.split_fractions=[0.5, 0.0, 0.5]", out=f"run-{mode}")
        result = train(cfg)
        tokenizer = load_tokenizer(str(result.output_dir / "base"))
        out = score_answers(result.student.lm, tokenizer, split_debates(cfg, "test"),
                            GraphSpec.from_config(cfg, prompt_format=REFERENCE), CPU, student=result.student)
        assert 0.0 <= out["node_accuracy"] <= 1.0 and 0.5 <= out["node_majority"] <= 1.0
        assert result.student.training  # put back in the mode it was in


def test_bootstrap_interval_resamples_whole_mags() -> None:
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([(3, 3), (2, 2)]) == [1.0, 1.0]
    low, high = bootstrap_ci([(6, 6), (0, 6), (1, 1)])  # one MAG decides most pairs: a wide interval
    assert low < 0.2 and high > 0.8


def test_held_out_scoring_ignores_the_training_node_filters(tiny_base) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    tokenizer = load_tokenizer(str(tiny_base))
    cfg = load_config(None, ["data.max_rounds=1", "data.agents=alice", "data.label_source=team"], env={})
    spec = GraphSpec.from_config(cfg, prompt_format=REFERENCE)
    assert score_answers(model, tokenizer, [_replayed_debate()], spec, CPU)["nodes"] == 6
