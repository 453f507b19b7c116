"""One MAG -> one PyG `Data`: node texts as token ids, labels, INFORMS edges and ranking pairs.

Design decisions (docs/method.md §2, §5.1 and defects D2-D9):
- Node = a VALID response whose correctness is known (label 1 correct / 0 incorrect). Absent,
  invalid and unlabelled responses are EXCLUDED from the graph (no node, no edge) and counted:
  they have no text (D3), and a learned placeholder for them would only teach the GCN that
  "missing" is a class. `loss.num_classes` 3 keeps the paper's head shape; class 2 never occurs.
- Nodes are numbered in panel order, then round (`Debate.sorted_responses`), so the same MAG read
  from Neo4j or from jsonl gives the identical graph. Edges follow the MAG's INFORMS edges
  (source -> target, PyG convention), sorted; edges touching an excluded node are dropped.
- Ranking pairs come from the MAG's own nodes only (D2): correct x incorrect balanced as §5.1
  (the shorter list repeated cyclically), with an explicit `pair_has_neg` flag instead of the
  reference's "NA" placeholder (D7).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING

import torch
from torch_geometric.data import Data

from magdi.answers import remove_agreement
from magdi.errors import UserError
from magdi.mag import Debate, Question, Response
from magdi.prompts import REFERENCE, PromptFormat, answer_text

if TYPE_CHECKING:
    from trainer.config import TrainConfig

log = logging.getLogger(__name__)


# -- texts as the student sees them (the formats themselves live in magdi.prompts) ---------------------
def adds_bos(tokenizer: object) -> bool:
    """Whether the tokenizer puts BOS in front of a text by itself (Mistral, Llama 2, tiny: yes; SmolLM2: no)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and tokenizer("x")["input_ids"][:1] == [bos]


class StudentPrompt:
    """A prompt format bound to the student's tokenizer: the ONE place that turns a question into
    prompt token ids (generation) and node texts into training ids, with the BOS/EOS conventions.

    `reference`: BOS when the tokenizer adds one itself, then the text, then EOS (docs/method.md §2.2,
    `add_eos_token=True`). `chat_template`: the rendered text carries its own special tokens and
    ends with the template's end-of-turn marker, so nothing is added.
    """

    def __init__(self, tokenizer: object, kind: str = REFERENCE) -> None:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("the tokenizer has no EOS token; node texts must end with one (docs/method.md §2.2)")
        self.tokenizer = tokenizer
        self.format = PromptFormat(kind, tokenizer)  # type: ignore[arg-type]
        chat = self.format.text_has_special_tokens
        self.bos: list[int] = [] if chat or not adds_bos(tokenizer) else [tokenizer.bos_token_id]
        self.eos: list[int] = [] if chat else [eos]

    def prompt_ids(self, question: Question) -> list[int]:
        """Token ids the student generates from (no padding)."""
        return self.bos + self.tokenizer(self.format.prompt(question), add_special_tokens=False)["input_ids"]


def question_hash(question_id: str) -> int:
    """A 63-bit integer for a question id, carried per node so a batch can be checked by question."""
    return int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "big") & (2**63 - 1)


# -- counters --------------------------------------------------------------------------------------
@dataclass
class DataStats:
    """What the pipeline skipped or changed, so nothing is dropped silently."""

    mags_read: int = 0
    """MAGs of the requested split that were read."""
    mags_used: int = 0
    """MAGs turned into a training graph."""
    skipped_no_nodes: int = 0
    """MAGs with only absent/invalid/unlabelled responses: nothing to train on."""
    skipped_no_target: int = 0
    """MAGs without an NLL target (no correct node; for sft-single: the strongest teacher's
    round-0 answer is not correct) and no other use (GCN off)."""
    no_correct_kept: int = 0
    """MAGDi with L_I on: MAGs without a correct node, kept for node classification only."""
    nodes_used: int = 0
    nodes_excluded: int = 0
    """Absent, invalid or unlabelled responses left out of their graphs."""
    nodes_filtered: int = 0
    """Responses left out on purpose by data.max_rounds / data.agents."""
    nodes_truncated: int = 0
    """Node texts cut to data.max_length tokens."""

    def add(self, other: DataStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- planning (no tokenizer needed) -----------------------------------------------------------------
@dataclass(frozen=True)
class GraphSpec:
    """The parts of the config that decide how a MAG becomes a graph."""

    objective: str = "magdi"
    keep_without_correct: bool = True
    """Keep MAGs without a correct node (they still feed L_I); False when L_I is off."""
    strongest_agent: str | None = None
    max_length: int = 2048
    remove_agreement: bool = True
    agreement_prefixes: tuple[str, ...] = ("I agree", "I disagree")
    prompt_format: str = REFERENCE
    """`reference` or `chat_template` (resolved; see magdi.prompts)."""
    max_rounds: int | None = None
    """Keep rounds 0..max_rounds-1 of each debate (None = all)."""
    agents: tuple[str, ...] | None = None
    """Keep only these agents' responses (None = all)."""
    label_source: str = "node"
    """`node` (each response's own correctness), `agent_final` (its agent's last kept answer's) or
    `team` (the debate's final team answer's, for every node)."""
    use_edges: bool = True
    """False: no edges (the GCN sees each node alone, plus its self-loop)."""

    @classmethod
    def from_config(cls, cfg: TrainConfig, **changes: object) -> GraphSpec:
        """The spec a training config asks for (`changes` override fields, e.g. the resolved prompt format)."""
        d = cfg.data
        spec = cls(objective=cfg.objective, keep_without_correct=cfg.gcn_on and d.keep_without_correct,
                   strongest_agent=d.strongest_agent, max_length=d.max_length, remove_agreement=d.remove_agreement,
                   agreement_prefixes=tuple(d.agreement_prefixes), max_rounds=d.max_rounds,
                   agents=tuple(d.agents) if d.agents is not None else None, label_source=d.label_source,
                   use_edges=d.use_edges)
        return replace(spec, **changes)

    def held_out(self) -> GraphSpec:
        """The same texts, edges and format, but every node with its own label and every MAG kept
        (also one without a correct answer): what evaluation scores, identical for every training recipe."""
        return replace(self, max_rounds=None, agents=None, label_source="node", objective="magdi",
                       keep_without_correct=True)


@dataclass
class NodePlan:
    nodes: list[Response]
    labels: list[int]
    nll: list[bool]
    pairs: list[tuple[int, int, bool]]
    edges: list[tuple[int, int]]
    excluded: int = 0
    filtered: int = 0


@dataclass
class Skip:
    reason: str  # a DataStats counter name
    excluded: int = 0
    filtered: int = 0


def _selected(r: Response, spec: GraphSpec) -> bool:
    """Whether data.max_rounds / data.agents keep this response."""
    return (spec.max_rounds is None or r.round < spec.max_rounds) and (spec.agents is None or r.agent in spec.agents)


def node_labels(debate: Debate, nodes: Sequence[Response], source: str) -> list[int]:
    """Each node's class under `source` (1 correct, 0 incorrect, 2 unknown); see GraphSpec.label_source."""
    if source == "node":
        return [r.label for r in nodes]
    if source == "team":
        team = 2 if debate.team_correct is None else int(debate.team_correct)
        return [team for _ in nodes]
    last: dict[str, int] = {}
    for r in nodes:  # panel order, then round: the last one seen per agent is its final answer
        last[r.agent] = r.label
    return [last[r.agent] for r in nodes]


def plan_graph(debate: Debate, spec: GraphSpec) -> NodePlan | Skip:
    """Choose nodes, NLL targets, pairs and edges of one MAG, or say why it is skipped."""
    responses = debate.sorted_responses()
    chosen = [r for r in responses if _selected(r, spec)]
    filtered = len(responses) - len(chosen)
    valid = [r for r in chosen if r.label in (0, 1)]
    labels = node_labels(debate, valid, spec.label_source)
    nodes = [r for r, lab in zip(valid, labels, strict=True) if lab in (0, 1)]
    labels = [lab for lab in labels if lab in (0, 1)]
    excluded = len(chosen) - len(nodes)
    if not nodes:
        return Skip("skipped_no_nodes", excluded, filtered)
    if spec.objective == "sft-single":
        nll = [lab == 1 and r.round == 0 and r.agent == spec.strongest_agent for r, lab in zip(nodes, labels, strict=True)]
    else:
        nll = [lab == 1 for lab in labels]
    if not any(nll) and (spec.objective != "magdi" or not spec.keep_without_correct):
        return Skip("skipped_no_target", excluded, filtered)
    pairs: list[tuple[int, int, bool]] = []
    if spec.objective == "magdi":
        pos = [i for i, lab in enumerate(labels) if lab == 1]
        neg = [i for i, lab in enumerate(labels) if lab == 0]
        if pos and neg:
            n = max(len(pos), len(neg))
            pairs = [(pos[i % len(pos)], neg[i % len(neg)], True) for i in range(n)]
        elif pos:
            pairs = [(p, p, False) for p in pos]  # no negative in this MAG: flagged, never scored
    index = {(r.agent, r.round): i for i, r in enumerate(nodes)}
    edges = sorted({
        (index[(e.source_agent, e.source_round)], index[(e.target_agent, e.target_round)])
        for e in debate.edges
        if (e.source_agent, e.source_round) in index and (e.target_agent, e.target_round) in index
    }) if spec.use_edges else []
    return NodePlan(nodes, labels, nll, pairs, edges, excluded, filtered)


def node_texts(debate: Debate, nodes: Sequence[Response], spec: GraphSpec, tokenizer: object = None
               ) -> tuple[str, list[str]]:
    """(prompt, node texts) of planned nodes in the spec's prompt format; reasoning cleaned of
    agreement sentences (§2.4). Every text starts with the prompt."""
    fmt = PromptFormat(spec.prompt_format, tokenizer)  # type: ignore[arg-type]
    out = []
    for r in nodes:
        reasoning = r.reasoning or ""
        if spec.remove_agreement:
            reasoning = remove_agreement(reasoning, spec.agreement_prefixes)
        out.append(fmt.text(debate.question, answer_text(reasoning, r.answer)))
    return fmt.prompt(debate.question), out


# -- encoding --------------------------------------------------------------------------------------
class MAGEncoder:
    """Tokenises planned MAGs into `Data` objects; counts skips and truncations in `stats`."""

    def __init__(self, tokenizer: object, spec: GraphSpec) -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.stats = DataStats()
        self.student = StudentPrompt(tokenizer, spec.prompt_format)
        self._bos, self._eos = self.student.bos, self.student.eos

    def encode(self, debate: Debate) -> Data | None:
        """The MAG as a graph, or None (skipped and counted)."""
        self.stats.mags_read += 1
        plan = plan_graph(debate, self.spec)
        self.stats.nodes_excluded += plan.excluded
        self.stats.nodes_filtered += plan.filtered
        if isinstance(plan, Skip):
            setattr(self.stats, plan.reason, getattr(self.stats, plan.reason) + 1)
            return None
        if not any(plan.nll):
            self.stats.no_correct_kept += 1
        prompt, texts = node_texts(debate, plan.nodes, self.spec, self.tokenizer)
        ids, prompt_lens = self._tokenize(prompt, texts)
        n = len(plan.nodes)
        self.stats.mags_used += 1
        self.stats.nodes_used += n
        pairs = torch.tensor([[p for p, _, _ in plan.pairs], [q for _, q, _ in plan.pairs]], dtype=torch.long)
        edges = torch.tensor(plan.edges, dtype=torch.long).t().reshape(2, -1)
        qhash = question_hash(debate.question.id)
        return Data(
            num_nodes=n,
            tokens=torch.tensor([t for seq in ids for t in seq], dtype=torch.long),
            length=torch.tensor([len(seq) for seq in ids], dtype=torch.long),
            prompt_length=torch.tensor(prompt_lens, dtype=torch.long),
            y=torch.tensor(plan.labels, dtype=torch.long),
            edge_index=edges,
            nll_mask=torch.tensor(plan.nll, dtype=torch.bool),
            pair_index=pairs.reshape(2, -1),
            pair_has_neg=torch.tensor([h for _, _, h in plan.pairs], dtype=torch.bool),
            node_qhash=torch.full((n,), qhash, dtype=torch.long),
            node_round=torch.tensor([r.round for r in plan.nodes], dtype=torch.long),
            qid=debate.question.id,
            debate_id=debate.id,
            debate_tokens_out=torch.tensor([debate.tokens_out], dtype=torch.long),
        )

    def _tokenize(self, prompt: str, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        tok = self.tokenizer
        cut = len(prompt)
        if getattr(tok, "is_fast", False):
            enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
            bodies = enc["input_ids"]
            # tokens that start inside the prompt; exact for the whole-text tokenisation we train on
            prompt_lens = [len(self._bos) + sum(1 for s, _ in offs if s < cut) for offs in enc["offset_mapping"]]
        else:  # slow tokenizers have no offsets: count the prompt tokenised alone
            bodies = tok(texts, add_special_tokens=False)["input_ids"]
            p = len(self._bos) + len(tok(prompt, add_special_tokens=False)["input_ids"])
            prompt_lens = [p] * len(texts)
        ids = []
        for body in bodies:
            seq = self._bos + list(body) + self._eos
            if len(seq) > self.spec.max_length:
                seq = seq[: self.spec.max_length]  # keep the start; the cut answer carries no EOS
                self.stats.nodes_truncated += 1
            ids.append(seq)
        return ids, [min(p, len(s)) for p, s in zip(prompt_lens, ids, strict=True)]


# -- one pass over the training split ----------------------------------------------------------------
@dataclass
class ScanResult:
    """What the trainer needs to know before step 0: sizes, the strongest teacher, texts."""

    items: int
    stats: DataStats
    round0_accuracy: dict[str, float]
    strongest_agent: str | None
    tokens_out: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def scan_debates(debates: Iterable[Debate], spec: GraphSpec, *, collect_texts: bool = False,
                 tokenizer: object = None) -> ScanResult:
    """Count usable MAGs and teachers' round-0 accuracy over already split-filtered debates.

    Round-0 accuracy of an agent = correct round-0 answers / training MAGs it sat in (a missing or
    invalid answer counts as wrong), the single-teacher baseline's "strongest teacher" criterion.
    With a `tokenizer`, node texts are tokenised too, so `nodes_truncated` counts the nodes that
    training will cut to `max_length` (the stream's own counters then say the same).
    """
    stats = DataStats()
    seen: dict[str, int] = {}
    correct: dict[str, int] = {}
    per_debate: list[tuple[frozenset[str], int, int]] = []  # (round-0 correct agents, nodes, truncated)
    texts: list[str] = []
    tokens_out: list[int] = []
    encoder = MAGEncoder(tokenizer, spec) if tokenizer is not None else None
    # sft-single's targets depend on the strongest teacher, known only after this pass: plan as
    # sft-multi now and keep the per-MAG round-0 winners to count sft-single's MAGs at the end
    multi = replace(spec, objective="magdi" if spec.objective == "magdi" else "sft-multi")
    for debate in debates:
        stats.mags_read += 1
        tokens_out.append(debate.tokens_out)
        for a in debate.panel:
            seen[a.name] = seen.get(a.name, 0) + 1
        for agent in {r.agent for r in debate.responses if r.round == 0 and r.label == 1}:
            correct[agent] = correct.get(agent, 0) + 1
        plan = plan_graph(debate, multi)
        stats.nodes_excluded += plan.excluded
        stats.nodes_filtered += plan.filtered
        if isinstance(plan, Skip):
            setattr(stats, plan.reason, getattr(stats, plan.reason) + 1)
            continue
        good = frozenset(r.agent for r, lab in zip(plan.nodes, plan.labels, strict=True) if r.round == 0 and lab == 1)
        if spec.objective == "magdi" and not any(plan.nll):
            stats.no_correct_kept += 1
        truncated = 0
        if encoder is not None or collect_texts:
            prompt, node_strings = node_texts(debate, plan.nodes, spec, tokenizer)
            if collect_texts:
                texts.extend(node_strings)
            if encoder is not None:
                before = encoder.stats.nodes_truncated
                encoder._tokenize(prompt, node_strings)
                truncated = encoder.stats.nodes_truncated - before
        per_debate.append((good, len(plan.nodes), truncated))
    strongest = spec.strongest_agent
    if spec.agents is not None and (unknown := sorted(set(spec.agents) - set(seen))):
        raise UserError(f"data.agents: {', '.join(map(repr, unknown))} not an agent of the training MAGs "
                         f"(agents: {', '.join(sorted(seen)) or 'none'})")
    accuracy = {a: correct.get(a, 0) / n for a, n in sorted(seen.items())
                if spec.agents is None or a in spec.agents}
    if spec.objective == "sft-single":
        if strongest is None and accuracy:
            strongest = min(accuracy, key=lambda a: (-accuracy[a], a))
        if strongest is not None and strongest not in accuracy:
            raise UserError(f"data.strongest_agent: {strongest!r} is not an agent of the training MAGs "
                             f"(agents: {', '.join(accuracy) or 'none'})")
        kept = [row for row in per_debate if strongest in row[0]]
        stats.skipped_no_target += len(per_debate) - len(kept)
        per_debate = kept
    stats.mags_used = len(per_debate)
    stats.nodes_used = sum(n for _, n, _ in per_debate)
    stats.nodes_truncated = sum(t for _, _, t in per_debate)
    return ScanResult(stats.mags_used, stats, accuracy, strongest, tokens_out, texts)
