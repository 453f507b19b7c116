"""The student: losses, where their gradients go in each mode (D1), one pass vs two, heads."""

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
    assert a.nll.item() == pytest.approx(b.nll.item(), abs=1e-5)
    assert a.rank.item() == pytest.approx(b.rank.item(), abs=1e-5)
    assert a.node.item() != pytest.approx(b.node.item(), abs=1e-6)  # only the GCN features differ


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
