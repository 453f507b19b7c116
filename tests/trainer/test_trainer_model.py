"""The student: losses, where their gradients go in each mode (docs/method.md D1), one pass vs two, heads."""

from __future__ import annotations

import pytest
import torch

from trainer.data import MAGCollator
from trainer.graphs import GraphSpec, MAGEncoder


@pytest.fixture
def batch(tokenizer, synth):
    enc = MAGEncoder(tokenizer, GraphSpec())
    return MAGCollator(tokenizer.pad_token_id)([enc.encode(synth(i, rounds=2 + i % 2)) for i in range(4)])


def _lora_grad_norm(student) -> float:
    grads = [p.grad for n, p in student.lm.named_parameters() if "lora_" in n and p.grad is not None]
    return float(sum(g.norm() ** 2 for g in grads)) ** 0.5 if grads else 0.0


@pytest.mark.parametrize("mode", ["end_to_end", "reference"])
def test_the_three_losses_are_finite(make_student, batch, mode: str) -> None:
    out = make_student(f"mode={mode}")(batch)
    for key in ("loss", "nll", "node", "rank"):
        assert torch.isfinite(out[key]), key
    assert out["loss"].requires_grad and int(out["n_pairs"]) > 0


@pytest.mark.parametrize("term", ["node", "rank"])
def test_end_to_end_gcn_and_ranking_terms_alone_reach_lora(make_student, batch, term: str) -> None:
    student = make_student("mode=end_to_end")
    terms = student.compute_terms(batch)
    getattr(terms, term).backward()
    assert _lora_grad_norm(student) > 0.0


def test_reference_mode_gcn_term_never_reaches_lora(make_student, batch) -> None:
    """Guards D1: in the reference the GCN reads frozen base-model embeddings (issues #2, #5)."""
    student = make_student("mode=reference")
    student.compute_terms(batch).node.backward()
    assert _lora_grad_norm(student) == 0.0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.gcn.parameters())


def test_reference_mode_ranking_term_reaches_lora_as_in_the_reference(make_student, batch) -> None:
    """Spec §5.4: the reference's ranking pass goes through the LoRA student (its only aux gradient)."""
    student = make_student("mode=reference")
    student.compute_terms(batch).rank.backward()
    assert _lora_grad_norm(student) > 0.0


def test_one_pass_gives_the_same_nll_and_ranking_as_two_passes(make_student, batch) -> None:
    e2e, ref = make_student("mode=end_to_end"), make_student("mode=reference")
    ref.load_state_dict(e2e.state_dict())
    e2e.eval(), ref.eval()
    with torch.no_grad():
        a, b = e2e.compute_terms(batch), ref.compute_terms(batch)
    assert a.rank.item() == pytest.approx(b.rank.item(), abs=1e-5)
    assert a.node.item() != pytest.approx(b.node.item(), abs=1e-6)  # the GCN features differ
    # and L+ counts a positive once per pair it belongs to in reference mode (next test)


def test_reference_mode_counts_a_positive_once_per_pair_as_the_reference_does(make_student, tokenizer) -> None:
    """2 correct, 3 incorrect nodes: the reference trains rows (pos0, pos1, pos0) and averages HF's
    causal-LM loss over all their tokens; end_to_end trains each correct node once."""
    from magdi.mag import Agent, Debate, Question, Response, TaskType

    q = Question(dataset="toy", qid="q", text="What is 3 + 4?", task=TaskType.NUMBER, gold_answer="7")
    cells = [("a", "3 + 4 = 7.", "7", True), ("b", "Three plus four is seven, clearly.", "7", True),
             ("c", "3 * 4 = 12.", "12", False), ("d", "4 - 3 = 1.", "1", False), ("e", "No idea.", "0", False)]
    debate = Debate(question=q, panel=[Agent(name=n, model="m") for n, *_ in cells],
                    responses=[Response(agent=n, round=0, reasoning=r, answer=a, correct=ok) for n, r, a, ok in cells])
    data = MAGEncoder(tokenizer, GraphSpec()).encode(debate)
    batch = MAGCollator(tokenizer.pad_token_id)([data])
    assert batch.pair_index[0].tolist() == [0, 1, 0]

    def hf_loss(student, rows: list[int]) -> float:
        ids, mask = batch.input_ids[rows], batch.attention_mask[rows]
        with torch.no_grad():
            return float(student.lm(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss)

    for mode, rows in (("reference", [0, 1, 0]), ("end_to_end", [0, 1])):
        student = make_student(f"mode={mode}")
        student.eval()
        with torch.no_grad():
            nll = student.compute_terms(batch).nll.item()
        assert nll == pytest.approx(hf_loss(student, rows), abs=1e-5), mode
        assert nll != pytest.approx(hf_loss(student, [0, 1, 0] if mode == "end_to_end" else [0, 1]), abs=1e-5)


def test_end_to_end_runs_the_lm_once_and_reference_twice(make_student, batch) -> None:
    calls = []
    counts = {}
    for mode in ("end_to_end", "reference"):
        student = make_student(f"mode={mode}")
        decoder = student.lm.get_base_model().get_decoder()
        handle = decoder.register_forward_hook(lambda *_: calls.append(1))
        if mode == "reference":
            student.frozen_embeddings(batch)  # fill the frozen-feature cache (once per node, no grad)
        calls.clear()
        student(batch)
        counts[mode] = len(calls)
        handle.remove()
    assert counts == {"end_to_end": 1, "reference": 2}


def test_frozen_features_are_computed_once_per_node(make_student, batch) -> None:
    student = make_student("mode=reference")
    first = student.frozen_embeddings(batch)
    size = len(student._frozen)
    assert torch.equal(first, student.frozen_embeddings(batch)) and len(student._frozen) == size


def test_embeddings_do_not_depend_on_the_batch(make_student, tokenizer, synth) -> None:
    from trainer.losses import position_weighted_pool

    student = make_student()
    student.eval()
    enc = MAGEncoder(tokenizer, GraphSpec())
    short = enc.encode(synth(0))
    long_debate = synth(1)
    long_r = long_debate.responses[0].model_copy(update={"reasoning": "and then " * 40})
    long_debate = long_debate.model_copy(update={"responses": [long_r, *long_debate.responses[1:]]})
    collate = MAGCollator(tokenizer.pad_token_id)
    alone, mixed = collate([short]), collate([short, enc.encode(long_debate)])
    assert mixed.input_ids.shape[1] > alone.input_ids.shape[1]
    with torch.no_grad():
        e1 = position_weighted_pool(student.hidden_states(alone.input_ids, alone.attention_mask), alone.attention_mask)
        e2 = position_weighted_pool(student.hidden_states(mixed.input_ids, mixed.attention_mask), mixed.attention_mask)
    assert torch.allclose(e1, e2[: short.num_nodes], atol=1e-5)  # D6


def test_gcn_dropout_is_on_in_train_and_off_in_eval(make_student) -> None:
    gcn = make_student("loss.gcn_dropout=0.5").gcn
    x, edges = torch.randn(6, 64), torch.tensor([[0, 1, 2], [3, 4, 5]])
    gcn.eval()
    assert torch.equal(gcn(x, edges), gcn(x, edges))
    gcn.train()
    assert not torch.equal(gcn(x, edges), gcn(x, edges))


def test_sft_objectives_have_no_heads(make_student) -> None:
    student = make_student("objective=sft-multi")
    assert student.gcn is None and student.scorer is None and student.head_parameters() == []


def test_identical_node_texts_share_one_pass_with_the_same_loss_and_gradients(make_student, tokenizer, synth,
                                                                             monkeypatch) -> None:
    """A teacher that keeps its answer repeats its text: the LM runs once per distinct text, and the
    loss and LoRA gradients are those of one pass per node (dropout off to compare exactly)."""
    import trainer.model as model_module

    debate = synth(7, rounds=2)
    echoed = [r if r.round == 0 else r.model_copy(update={"reasoning": first.reasoning, "answer": first.answer,
                                                          "correct": first.correct})
              for r in debate.responses
              for first in [next(x for x in debate.responses if x.agent == r.agent and x.round == 0)]]
    debate = debate.model_copy(update={"responses": echoed})
    batch = MAGCollator(tokenizer.pad_token_id)([MAGEncoder(tokenizer, GraphSpec()).encode(debate)])
    keep, inverse = model_module.distinct_rows(batch.input_ids, batch.attention_mask)
    texts = {tuple(row[m.bool()].tolist()) for row, m in zip(batch.input_ids, batch.attention_mask, strict=True)}
    assert len(keep) == len(texts) < batch.input_ids.shape[0] == 6
    assert torch.equal(batch.input_ids[keep][inverse], batch.input_ids)

    def run() -> tuple[float, list[torch.Tensor]]:
        student = make_student("mode=end_to_end", seed=3).eval()
        out = student(batch)
        out["loss"].backward()
        return float(out["loss"]), [p.grad.clone() for p in student.lora_parameters()]

    shared_loss, shared_grads = run()
    monkeypatch.setattr(model_module, "distinct_rows",
                        lambda ids, mask, groups=None: (torch.arange(len(ids)), torch.arange(len(ids))))
    separate_loss, separate_grads = run()
    assert shared_loss == pytest.approx(separate_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(shared_grads, separate_grads, strict=True))
