"""MAGDi's loss terms as pure functions of tensors (docs/method.md §5.2-§5.6).

Shapes use N = nodes, T = padded sequence length, H = hidden size, V = vocabulary, P = pairs,
C = classes. None of these functions looks at a model; `trainer.model` wires them together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def position_weighted_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """e = sum_i i * h_i / sum_i i over the REAL tokens i = 1..L of each sequence (docs/method.md §5.3).

    Args:
        hidden: (N, T, H) last-layer states (post final norm).
        attention_mask: (N, T) 1 for real tokens, 0 for padding, either side.
    Returns:
        (N, H) float32 embeddings. The weights count real tokens only (cumulative sum of the
        mask), so an embedding does not depend on how much padding its batch added (D6).
    """
    mask = attention_mask.to(torch.float32)
    weights = torch.cumsum(mask, dim=1) * mask  # 1..L on real tokens, 0 on padding
    summed = torch.einsum("nt,nth->nh", weights, hidden.to(torch.float32))
    return summed / weights.sum(dim=1, keepdim=True).clamp(min=1.0)


def nll_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: torch.Tensor,
               mask_prompt: bool) -> torch.Tensor:
    """Causal-LM labels: the input ids, -100 on padding and (optionally) on the prompt.

    Args:
        input_ids, attention_mask: (N, T), right-padded.
        prompt_length: (N,) tokens of `<s>[INST] ... ### Answer:` at the start of each row.
        mask_prompt: False reproduces the reference (question and template are trained, §5.2).
    Returns:
        (N, T) long labels, not shifted.
    """
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    if mask_prompt:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        labels = labels.masked_fill(positions[None, :] < prompt_length[:, None], IGNORE_INDEX)
    return labels


def next_token_targets(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the (state, next token) pairs that the NLL scores, so the LM head only runs on them.

    Args:
        hidden: (N, T, H) states; labels: (N, T) from `nll_labels`.
    Returns:
        states (K, H) and targets (K,), K = number of scored tokens (shift by one inside).
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return hidden[:, :-1][keep], targets[keep]


def target_rows(labels: torch.Tensor) -> torch.Tensor:
    """(K,) the row of each token `next_token_targets` keeps, in the same order."""
    return torch.nonzero(labels[:, 1:] != IGNORE_INDEX, as_tuple=True)[0]


def token_nll(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy over all scored tokens of the micro-batch (HF convention).

    Args:
        logits: (K, V); targets: (K,); weights: optional (K,) token weights, the mean becomes
            sum(w * ce) / sum(w), i.e. a token of weight 2 counts as if its sequence appeared twice
            in the micro-batch (the reference's replicated positives, docs/method.md §5.1-§5.2).
    Returns a scalar (float32).
    """
    if weights is None:
        return F.cross_entropy(logits.float(), targets)
    losses = F.cross_entropy(logits.float(), targets, reduction="none")
    weights = weights.to(losses.dtype)
    return (losses * weights).sum() / weights.sum()


def node_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_I: mean cross-entropy of the GCN's node logits (C classes) over all nodes of the batch.

    Args:
        logits: (N, C) raw scores (no log-softmax before: the reference normalised twice);
        labels: (N,) in 0..C-1. Returns a scalar.
    """
    return F.cross_entropy(logits.float(), labels)


def node_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of nodes whose argmax class is the label; (N, C), (N,) -> scalar."""
    return (logits.argmax(dim=-1) == labels).float().mean()


def pair_ranking_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, has_negative: torch.Tensor,
                      margin: float = 1.0) -> torch.Tensor | None:
    """L-: mean over real pairs of max(0, margin - s(e+) + s(e-)) (docs/method.md §5.4, target +1).

    Args:
        pos_scores, neg_scores: (P,) scorer outputs in [-1, 1]; has_negative: (P,) bool, False for
            pairs of a MAG without an incorrect node. Those are never scored (D7).
    Returns:
        A scalar, or None when no pair has a negative (the term is skipped, not faked).
    """
    if not bool(has_negative.any()):
        return None
    gap = margin - pos_scores[has_negative] + neg_scores[has_negative]
    return torch.clamp(gap, min=0.0).mean()


def total_loss(nll: torch.Tensor | None, node: torch.Tensor | None, rank: torch.Tensor | None, *,
               alpha: float, beta: float, gamma: float) -> torch.Tensor | None:
    """L = alpha L+ + beta L_I + gamma L- over the terms present (docs/method.md §5.6); None if none is."""
    terms = [w * t for w, t in ((alpha, nll), (beta, node), (gamma, rank)) if t is not None]
    if not terms:
        return None
    return torch.stack(terms).sum()
