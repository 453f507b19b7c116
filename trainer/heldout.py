"""Held-out MAGs scored by a student: NLL of the correct answers, preference accuracy, GCN accuracy.

Cheap on a CPU (one forward pass per distinct node text, no generation), so these figures carry
the comparison when greedy accuracy on a handful of questions is all noise.

Three choices, each fixing a way the figure misled before (issue 12, the demo's "preference
accuracy fell after training"):
- **Whole answers.** Node texts are scored up to `max_length` (default 2048 tokens), not the
  training cap (`data.max_length`, 192 in the CPU recipe): a cut answer loses its final sentence,
  which is where a correct and an incorrect solution differ most, and the comparison then rests on
  the first few dozen tokens. Texts longer than `max_length` are still cut, and counted.
- **Distinct texts.** A teacher that keeps its answer in a discussion round repeats its own text,
  and one that switches repeats another's, so a MAG often holds the same text several times. Each
  distinct text is scored once and pairs are formed between distinct correct and distinct
  incorrect texts of the same MAG; otherwise one near-tie copied 2 x 3 times outweighs everything.
- **Uncertainty by MAG.** Pairs of one MAG share their texts, so the interval is a bootstrap over
  MAGs (seeded), not a binomial interval over pairs.

Preference: a correct answer "wins" when its mean log-likelihood per answer token is higher than
the incorrect one's (length-normalised, prompt excluded).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from magdi.mag import Debate
from trainer.data import MAGCollator
from trainer.graphs import GraphSpec, MAGEncoder
from trainer.losses import IGNORE_INDEX, next_token_targets, nll_labels, position_weighted_pool, target_rows
from trainer.model import causal_lm_of, decoder_states, distinct_rows, trim_rows

SCORE_MAX_LENGTH = 2048
"""Tokens per scored node text (prompt included): whole answers, whatever the training cap."""
HEAD_CHUNK = 2048
"""Answer positions per LM-head call (bounds the (positions x vocabulary) logits in memory)."""


def bootstrap_ci(per_mag: Sequence[tuple[int, int]], *, draws: int = 2000, seed: int = 0) -> list[float] | None:
    """95% interval of sum(wins) / sum(pairs) when whole MAGs are resampled with replacement."""
    per_mag = [m for m in per_mag if m[1] > 0]
    if not per_mag:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(draws):
        sample = [per_mag[rng.randrange(len(per_mag))] for _ in per_mag]
        ratios.append(sum(w for w, _ in sample) / sum(p for _, p in sample))
    ratios.sort()
    return [round(ratios[int(0.025 * (draws - 1))], 4), round(ratios[int(0.975 * (draws - 1))], 4)]


def _answer_logprob_sums(causal_lm: Any, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of the tokens `labels` scores (LM head on those positions only)."""
    head = causal_lm.get_output_embeddings()
    states, targets = next_token_targets(hidden, labels)
    owners = target_rows(labels)
    logp = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
    for s in range(0, len(targets), HEAD_CHUNK):
        logits = head(states[s:s + HEAD_CHUNK]).float()
        logp[s:s + HEAD_CHUNK] = torch.log_softmax(logits, dim=-1).gather(-1, targets[s:s + HEAD_CHUNK, None])[:, 0]
    return torch.zeros(labels.shape[0], dtype=torch.float32, device=hidden.device).index_add_(0, owners, logp)


@torch.no_grad()
def score_answers(model: Any, tokenizer: Any, debates: list[Debate], spec: GraphSpec, device: torch.device, *,
                  student: Any = None, mags_per_forward: int = 2, max_length: int = SCORE_MAX_LENGTH,
                  seed: int = 0, desc: str = "score") -> dict[str, Any]:
    """Score every held-out MAG's answers under `model` (a causal LM, a peft model, or `student.lm`).

    `spec` gives the prompt format, text cleaning and edges; every valid node is scored with its own
    label, whatever nodes and labels training used (`GraphSpec.held_out`), so recipes compare.
    With a `student` whose GCN was trained (a `trainer.model.MAGDiStudent`), its node classifier is
    run on the same graphs (edges as `spec` builds them) and `node_accuracy` is reported beside
    `node_majority`, the share of the most frequent label (what a constant guess gets).

    Returns `nll_per_token` (mean over the answer tokens of the distinct correct texts),
    `preference_accuracy` with `preference_ci95`, and the counts behind them.
    """
    modules = [m for m in (model, student) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()  # no dropout in the LoRA layers or the GCN
    try:
        return _score(model, tokenizer, debates, spec, device, student, mags_per_forward, max_length, seed, desc)
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def _score(model: Any, tokenizer: Any, debates: list[Debate], spec: GraphSpec, device: torch.device, student: Any,
           mags_per_forward: int, max_length: int, seed: int, desc: str) -> dict[str, Any]:
    from tqdm.auto import tqdm

    spec = replace(spec.held_out(), max_length=max_length)
    encoder = MAGEncoder(tokenizer, spec)
    graphs = [g for g in (encoder.encode(d) for d in debates) if g is not None]
    collate = MAGCollator(tokenizer.pad_token_id)
    causal_lm = causal_lm_of(model)
    gcn = getattr(student, "gcn", None)
    per_mag: list[tuple[int, int]] = []
    nll_sum = tokens = distinct = node_hits = 0.0
    labels_seen: list[int] = []
    with tqdm(total=len(graphs), desc=desc, unit="MAG", dynamic_ncols=True) as bar:
        for start in range(0, len(graphs), mags_per_forward):
            batch = collate(graphs[start:start + mags_per_forward])
            rows, index = distinct_rows(batch.input_ids, batch.attention_mask, batch.batch)  # per MAG
            ids, mask, prompt_length = (t.to(device) for t in trim_rows(batch, rows))
            hidden = decoder_states(causal_lm, ids, mask)
            labels = nll_labels(ids, mask, prompt_length, mask_prompt=True)  # answers only
            sums = _answer_logprob_sums(causal_lm, hidden, labels).cpu()
            counts = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1).cpu()
            y, mag = batch.y[rows], batch.batch[rows]
            distinct += len(rows)
            nll_sum += float(-sums[y == 1].sum())
            tokens += float(counts[y == 1].sum())
            mean_ll = sums / counts.clamp(min=1)
            for g in mag.unique().tolist():
                good = mean_ll[(mag == g) & (y == 1)]
                bad = mean_ll[(mag == g) & (y == 0)]
                per_mag.append((int((good[:, None] > bad[None, :]).sum()), good.numel() * bad.numel()))
            if gcn is not None:
                if student.mode == "reference":
                    features = student.frozen_embeddings(batch.to(device))
                else:
                    features = position_weighted_pool(hidden, mask)[index.to(device)]
                predicted = gcn(features, batch.edge_index.to(device)).argmax(dim=-1).cpu()
                node_hits += int((predicted == batch.y).sum())
            labels_seen += batch.y.tolist()
            bar.update(batch.num_graphs)
    wins, pairs = sum(w for w, _ in per_mag), sum(p for _, p in per_mag)
    nodes = len(labels_seen)
    out: dict[str, Any] = {
        "nll_per_token": nll_sum / tokens if tokens else None,
        "preference_accuracy": wins / pairs if pairs else None,
        "preference_ci95": bootstrap_ci(per_mag, seed=seed),
        "pairs": pairs, "mags_with_pairs": sum(1 for _, p in per_mag if p), "mags": len(graphs),
        "nodes": nodes, "distinct_texts": int(distinct), "correct_tokens": int(tokens),
        "truncated": encoder.stats.nodes_truncated, "max_length": max_length,
    }
    if gcn is not None and nodes:
        out["node_accuracy"] = node_hits / nodes
        out["node_majority"] = max(labels_seen.count(0), labels_seen.count(1)) / nodes
    return out
