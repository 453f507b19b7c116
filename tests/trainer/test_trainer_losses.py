"""The loss terms as pure functions, on small tensors."""

from __future__ import annotations

import pytest
import torch

from trainer.losses import (
    IGNORE_INDEX,
    next_token_targets,
    nll_labels,
    pair_ranking_loss,
    position_weighted_pool,
    total_loss,
)


def test_pooling_weights_are_1_to_L_over_real_tokens_whatever_the_padding() -> None:
    torch.manual_seed(0)
    h = torch.randn(1, 3, 4)
    expected = (1 * h[0, 0] + 2 * h[0, 1] + 3 * h[0, 2]) / 6
    right = torch.cat([h, torch.randn(1, 2, 4)], dim=1)
    left = torch.cat([torch.randn(1, 2, 4), h], dim=1)
    pooled_right = position_weighted_pool(right, torch.tensor([[1, 1, 1, 0, 0]]))
    pooled_left = position_weighted_pool(left, torch.tensor([[0, 0, 1, 1, 1]]))
    # docs/method.md D6: the reference weighted by padded column index, so left padding changed the embedding
    assert torch.allclose(pooled_right[0], expected, atol=1e-6)
    assert torch.allclose(pooled_left[0], expected, atol=1e-6)


def test_nll_labels_ignore_padding_and_optionally_the_prompt() -> None:
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 5, 8, 2, 0, 0]])
    mask = (torch.arange(6)[None] < torch.tensor([[5], [4]])).long()
    prompt = torch.tensor([3, 2])
    plain = nll_labels(ids, mask, prompt, mask_prompt=False)
    assert plain.tolist() == [[1, 5, 6, 7, 2, IGNORE_INDEX], [1, 5, 8, 2, IGNORE_INDEX, IGNORE_INDEX]]
    masked = nll_labels(ids, mask, prompt, mask_prompt=True)
    assert masked.tolist() == [[-100, -100, -100, 7, 2, -100], [-100, -100, 8, 2, -100, -100]]
    states, targets = next_token_targets(torch.arange(12.0).reshape(2, 6, 1), masked)
    assert targets.tolist() == [7, 2, 8, 2]  # each scored with the state one position earlier
    assert states.squeeze(-1).tolist() == [2.0, 3.0, 7.0, 8.0]


def test_ranking_scores_only_real_pairs_and_skips_when_there_are_none() -> None:
    pos = torch.tensor([0.9, 0.1, 0.5])
    neg = torch.tensor([-0.5, 0.4, 0.0])
    has = torch.tensor([True, True, False])
    loss = pair_ranking_loss(pos, neg, has, margin=1.0)
    assert loss.item() == pytest.approx((max(0, 1 - 0.9 - 0.5) + max(0, 1 - 0.1 + 0.4)) / 2)
    assert pair_ranking_loss(pos, neg, torch.zeros(3, dtype=torch.bool)) is None  # D7: no "NA" pairs


def test_total_loss_weights_and_missing_terms() -> None:
    one = torch.tensor(1.0)
    assert total_loss(one, 2 * one, 3 * one, alpha=1.0, beta=1.0, gamma=0.1).item() == pytest.approx(3.3)
    assert total_loss(one, None, None, alpha=2.0, beta=1.0, gamma=0.1).item() == pytest.approx(2.0)
    assert total_loss(None, None, None, alpha=1.0, beta=1.0, gamma=0.1) is None
