"""The MAGDi student: a causal LM with LoRA, a 2-layer GCN over the MAG and a ranking scorer.

Two modes (docs/method.md §5.5, defect D1):
- `end_to_end` (the spec): ONE forward pass of the LoRA student over the batch's nodes gives the
  hidden states from which the NLL of the correct nodes, the GCN's node features and the ranking
  scores are all computed, so L_I and L- backpropagate into the LoRA weights.
- `reference` (for comparison only): what dinobby/MAGDi does. GCN features are the FROZEN base
  model's embeddings (adapter disabled, no grad), computed once per node and cached, so L_I never
  reaches LoRA; positives (NLL + e+) and negatives (e-) go through the student in two separate
  passes. Like the reference, the ranking term still reaches LoRA (docs/method.md §5.4).
The GCN and scorer exist for training only: inference uses the LM + adapter alone (§1.4).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import GCNConv

from magdi.errors import UserError
from trainer.config import ConfigError, TrainConfig
from trainer.losses import (
    next_token_targets,
    nll_labels,
    node_accuracy,
    node_classification_loss,
    pair_ranking_loss,
    position_weighted_pool,
    target_rows,
    token_nll,
    total_loss,
)

log = logging.getLogger(__name__)


# -- precision ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionPlan:
    """How weights are loaded and which autocast/scaler the loop uses (D13: a real choice)."""

    name: str
    load_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    grad_scaler: bool


def precision_plan(precision: str, device: torch.device) -> PrecisionPlan:
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp32":
        return PrecisionPlan("fp32", torch.float32, None, False)
    if precision == "bf16":
        return PrecisionPlan("bf16", torch.bfloat16, torch.bfloat16, False)
    if not cuda:
        raise ConfigError("model.precision: fp16 needs a CUDA device (use fp32 or bf16 on CPU)")
    # fp16 weights, fp32 LoRA/heads (peft upcasts adapters), autocast + loss scaling
    return PrecisionPlan("fp16", torch.float16, torch.float16, True)


# -- heads -------------------------------------------------------------------------------------------
class NodeGCN(nn.Module):
    """GCNConv(H -> hidden) -> ReLU -> dropout -> GCNConv(hidden -> C); raw logits out.

    `nn.Dropout` follows train()/eval() (the reference applied dropout in eval too, D13).
    """

    def __init__(self, in_dim: int, hidden: int = 512, classes: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_dim, hidden)
        self.conv2 = GCNConv(hidden, classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(self.conv1(x, edge_index)))
        return self.conv2(h, edge_index)


class Scorer(nn.Module):
    """s(e) = tanh(W2 ReLU(W1 e + b1) + b2), W1: H -> H, W2: H -> 1 (docs/method.md §5.4)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(e)).squeeze(-1)


# -- the student ---------------------------------------------------------------------------------------
class MAGDiStudent(nn.Module):
    """LoRA LM + training heads; `forward(batch)` returns the losses of one micro-batch.

    Output dict: `loss` (weighted total, always present and differentiable) and, when computed,
    detached `nll`, `node`, `rank`, `node_acc`, plus counts `n_pairs`, `n_nll_tokens`.
    """

    def __init__(self, lm: nn.Module, hidden_size: int, cfg: TrainConfig) -> None:
        super().__init__()
        self.lm = lm
        self.cfg = cfg
        self.mode = cfg.mode
        self.gcn = NodeGCN(hidden_size, cfg.loss.gcn_hidden, cfg.loss.num_classes, cfg.loss.gcn_dropout) if cfg.gcn_on else None
        self.scorer = Scorer(hidden_size) if cfg.ranking_on else None
        self._frozen: dict[bytes, torch.Tensor] = {}  # reference mode: node token ids -> base embedding

    # parameters by optimizer group (D13: the heads are new and get their own learning rate)
    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.lm.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        heads = [m for m in (self.gcn, self.scorer) if m is not None]
        return [p for m in heads for p in m.parameters()]

    def heads_state(self) -> dict[str, Any]:
        return {name: m.state_dict() for name, m in (("gcn", self.gcn), ("scorer", self.scorer)) if m is not None}

    def load_heads_state(self, state: dict[str, Any]) -> None:
        for name, module in (("gcn", self.gcn), ("scorer", self.scorer)):
            if module is not None:
                module.load_state_dict(state[name])

    # -- pieces ----------------------------------------------------------------------------------
    def _causal_lm(self) -> nn.Module:
        return self.lm.get_base_model()

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(R, T) right-padded ids -> (R, T, H) last-layer states (post final norm).

        Identical rows go through the LM once and their states are shared (`distinct_rows`): a
        teacher that keeps its answer in a discussion round repeats its text, so a MAG often holds
        the same node text two or three times. The loss and its gradient are those of separate
        passes (autograd sums the shared rows' gradients); only LoRA dropout masks are shared."""
        keep, inverse = distinct_rows(input_ids, attention_mask)
        if len(keep) == input_ids.shape[0]:
            return decoder_states(self._causal_lm(), input_ids, attention_mask)
        return decoder_states(self._causal_lm(), input_ids[keep], attention_mask[keep])[inverse]

    def _nll(self, hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, prompt_length: torch.Tensor,
             row_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        labels = nll_labels(ids, mask, prompt_length, self.cfg.loss.mask_prompt)
        states, targets = next_token_targets(hidden, labels)
        logits = self._causal_lm().get_output_embeddings()(states)
        weights = None if row_weights is None else row_weights[target_rows(labels)]
        return token_nll(logits, targets, weights), int(targets.numel())

    @torch.no_grad()
    def frozen_embeddings(self, batch: Any) -> torch.Tensor:
        """Reference mode: base-model (adapter off) pooled embeddings of every node, cached by text."""
        ids_all, mask_all = batch.input_ids, batch.attention_mask
        keys = [_row_key(ids_all[i], mask_all[i]) for i in range(ids_all.shape[0])]
        missing = [i for i, k in enumerate(keys) if k not in self._frozen]
        if missing:
            rows = torch.tensor(missing, device=ids_all.device)
            ids, mask, _ = trim_rows(batch, rows)
            was_training = self.lm.training
            self.lm.eval()
            try:
                with self.lm.disable_adapter():
                    emb = position_weighted_pool(self.hidden_states(ids, mask), mask)
            finally:
                self.lm.train(was_training)
            for i, e in zip(missing, emb, strict=True):
                self._frozen[keys[i]] = e.detach().float().cpu()
        return torch.stack([self._frozen[k] for k in keys]).to(ids_all.device)

    # -- forward ----------------------------------------------------------------------------------
    def compute_terms(self, batch: Any) -> LossTerms:
        """L+, L_I and L- of one micro-batch (undetached), computed as the mode prescribes."""
        device = batch.input_ids.device
        n = batch.input_ids.shape[0]
        nll_rows = torch.nonzero(batch.nll_mask, as_tuple=True)[0]
        real = batch.pair_has_neg
        pos, neg = batch.pair_index[0], batch.pair_index[1]
        want_nll = self.cfg.loss.alpha > 0 and len(nll_rows) > 0
        want_rank = self.scorer is not None and bool(real.any())
        terms = LossTerms(n_pairs=int(real.sum()) if want_rank else 0)

        if self.mode == "end_to_end":
            if self.gcn is not None:
                rows = torch.arange(n, device=device)
            else:
                rows = torch.unique(torch.cat([nll_rows] + ([pos[real], neg[real]] if want_rank else [])))
            ids, mask, plen = trim_rows(batch, rows)
            hidden = self.hidden_states(ids, mask)  # the ONE pass: positives, negatives, all nodes
            row_of = _positions(rows, n)
            if want_nll:
                sel = row_of[nll_rows]
                terms.nll, terms.n_nll_tokens = self._nll(hidden[sel], ids[sel], mask[sel], plen[sel])
            if self.gcn is not None or want_rank:
                emb = position_weighted_pool(hidden, mask)
                if self.gcn is not None:
                    terms.node_logits = self.gcn(emb, batch.edge_index)  # rows == all nodes, in order
                if want_rank:
                    scores = self.scorer(emb)
                    terms.rank = pair_ranking_loss(scores[row_of[pos]], scores[row_of[neg]], real, self.cfg.loss.margin)
        else:  # reference: positives and negatives in two passes, frozen features for the GCN
            first = torch.unique(torch.cat([nll_rows] + ([pos[real]] if want_rank else [])))
            if len(first):
                ids, mask, plen = trim_rows(batch, first)
                hidden = self.hidden_states(ids, mask)
                row_of = _positions(first, n)
                if want_nll:
                    sel = row_of[nll_rows]
                    terms.nll, terms.n_nll_tokens = self._nll(hidden[sel], ids[sel], mask[sel], plen[sel],
                                                              _pair_multiplicity(pos, nll_rows, n))
                if want_rank:
                    s_pos = self.scorer(position_weighted_pool(hidden, mask))[row_of[pos[real]]]
                    negatives = torch.unique(neg[real])
                    ids_n, mask_n, _ = trim_rows(batch, negatives)
                    s_neg = self.scorer(position_weighted_pool(self.hidden_states(ids_n, mask_n), mask_n))
                    s_neg = s_neg[_positions(negatives, n)[neg[real]]]
                    terms.rank = pair_ranking_loss(s_pos, s_neg, torch.ones_like(s_pos, dtype=torch.bool),
                                                   self.cfg.loss.margin)
            if self.gcn is not None:
                terms.node_logits = self.gcn(self.frozen_embeddings(batch), batch.edge_index)
        if terms.node_logits is not None:
            terms.node = node_classification_loss(terms.node_logits, batch.y)
        return terms

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        terms = self.compute_terms(batch)
        c = self.cfg.loss
        loss = total_loss(terms.nll, terms.node, terms.rank, alpha=c.alpha, beta=c.beta, gamma=c.gamma)
        if loss is None:  # nothing to learn here: a zero that still has a graph, so DDP's backward runs
            loss = sum(p.reshape(-1)[0] for p in self.parameters() if p.requires_grad) * 0.0
        out = {"loss": loss, "n_pairs": torch.tensor(terms.n_pairs), "n_nll_tokens": torch.tensor(terms.n_nll_tokens)}
        for name in ("nll", "node", "rank"):
            value = getattr(terms, name)
            if value is not None:
                out[name] = value.detach()
        if terms.node_logits is not None:
            out["node_acc"] = node_accuracy(terms.node_logits.detach(), batch.y)
        return out


@dataclass
class LossTerms:
    """The undetached loss terms of one micro-batch; None = not computed (off, or nothing to score)."""

    nll: torch.Tensor | None = None
    node: torch.Tensor | None = None
    rank: torch.Tensor | None = None
    node_logits: torch.Tensor | None = None
    n_pairs: int = 0
    n_nll_tokens: int = 0


def trim_rows(batch: Any, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's token rows `rows` (ids, mask, prompt lengths), trimmed to their longest real length."""
    mask = batch.attention_mask[rows]
    width = int(mask.sum(dim=1).max()) if len(rows) else 0
    return batch.input_ids[rows][:, :width], mask[:, :width], batch.prompt_length[rows]


def distinct_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, inverse) for (R, T) token rows: `keep` = the first row of each distinct token sequence
    (within its `groups` entry, if given), ascending; `inverse` (R,) = each row's index into `keep`."""
    marked = input_ids.masked_fill(attention_mask == 0, -1)
    if groups is not None:
        marked = torch.cat([groups[:, None].to(marked), marked], dim=1)
    _, inverse = torch.unique(marked, dim=0, return_inverse=True)
    rows = torch.arange(len(inverse), device=inverse.device)
    first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(inverse), dtype=torch.long,
                       device=inverse.device).scatter_reduce(0, inverse, rows, reduce="amin")
    order = torch.argsort(first)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=order.device)
    return first[order], position[inverse]


def causal_lm_of(model: nn.Module) -> nn.Module:
    """The causal LM inside a peft model (LoRA layers in place, active unless disabled), or the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_states(causal_lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(R, T) ids -> (R, T, H) last-layer states (post final norm) of a causal LM, without its LM head:
    callers apply the head to the positions they score only (the head is a quarter of a small model)."""
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else None
    if decoder is not None and decoder is not causal_lm:
        return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    out = causal_lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, output_hidden_states=True)
    return out.hidden_states[-1]


def _pair_multiplicity(pair_pos: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Reference-mode L+ weights: how many ranking pairs each NLL row is the positive of (>= 1).

    The reference trains one dataset row per (positive, negative) pair and uses the positive's ids
    as labels, so with |P| < |N| a correct node is trained as often as the balancing repeats it
    (docs/method.md §5.1-§5.2). `end_to_end` counts every correct node once.
    """
    return torch.bincount(pair_pos, minlength=n)[rows].clamp(min=1)  # no pairs: all zeros, so 1


def _positions(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of a sorted row selection: node id -> its row in the selection (-1 if absent)."""
    row_of = torch.full((n,), -1, dtype=torch.long, device=rows.device)
    row_of[rows] = torch.arange(len(rows), device=rows.device)
    return row_of


def _row_key(ids: torch.Tensor, mask: torch.Tensor) -> bytes:
    real = ids[mask.bool()].to(torch.int64).cpu().numpy().tobytes()
    return hashlib.sha1(real).digest()


# -- building --------------------------------------------------------------------------------------------
def load_tokenizer(name: str):
    """Tokenizer with the spec's conventions: pad = EOS when missing, left padding (generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.eos_token_id is None:
        raise UserError(f"model.tokenizer: {name} has no EOS token")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def build_student(cfg: TrainConfig, base: str, device: torch.device) -> tuple[MAGDiStudent, PrecisionPlan]:
    """Load the base LM (hub name or local dir), attach fresh LoRA adapters, add the heads."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    plan = precision_plan(cfg.model.precision, device)
    causal_lm = AutoModelForCausalLM.from_pretrained(base, dtype=plan.load_dtype)
    causal_lm.config.use_cache = False
    if cfg.model.gradient_checkpointing:
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = causal_lm.config.get_text_config().num_hidden_layers
    if cfg.lora.last_layers is not None and cfg.lora.last_layers > layers:
        raise ConfigError(f"lora.last_layers: {cfg.lora.last_layers} > the {layers} layers of {base}")
    last = None if cfg.lora.last_layers is None else list(range(layers - cfg.lora.last_layers, layers))
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), layers_to_transform=last, bias="none",
                      task_type="CAUSAL_LM")
    lm = get_peft_model(causal_lm, lora)
    hidden = causal_lm.config.get_text_config().hidden_size
    student = MAGDiStudent(lm, hidden, cfg).to(device)
    return student, plan
