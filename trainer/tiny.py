"""Tiny random students for tests, the demo and CPU benchmarks (no model hub needed).

`tiny:<preset>` in `model.base` builds a small Llama/Mistral from a config and a byte-level BPE
tokenizer trained on the training texts, and saves both to a directory that is then loaded like
any hub model (`from_pretrained(dir)`), so training, saving and evaluation take the same path
as for `mistralai/Mistral-7B-Instruct-v0.2`. The tokenizer mirrors the Mistral one where it
matters: `<s>` BOS added by `encode`, `</s>` EOS, pad = EOS, left padding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from magdi.errors import UserError

log = logging.getLogger(__name__)

PREFIX = "tiny:"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]

# name -> (architecture, hidden, layers, heads, intermediate)
PRESETS: dict[str, tuple[str, int, int, int, int]] = {
    "llama-64": ("llama", 64, 2, 4, 128),
    "mistral-64": ("mistral", 64, 2, 4, 128),
    "llama-256": ("llama", 256, 4, 8, 688),
}


def is_tiny(name: str) -> bool:
    return name.startswith(PREFIX)


def preset_of(name: str) -> str:
    preset = name[len(PREFIX):] if is_tiny(name) else name
    if preset not in PRESETS:
        raise UserError(f"model.base: unknown tiny preset {preset!r}; known: {', '.join(PREFIX + p for p in PRESETS)}")
    return preset


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, model_max_length: int = 4096):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as `PreTrainedTokenizerFast`.

    Byte-level means any later text (evaluation questions) still tokenises without `<unk>`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]),
    ])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>", padding_side="left", model_max_length=model_max_length)


def build_model(preset: str, vocab_size: int, *, bos_id: int, eos_id: int, seed: int = 0,
                max_positions: int = 4096):
    """A randomly initialised causal LM of the preset's size (deterministic given the seed)."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    arch, hidden, layers, heads, intermediate = PRESETS[preset_of(preset)]
    common = {"vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": intermediate,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads,
              "max_position_embeddings": max_positions, "bos_token_id": bos_id, "eos_token_id": eos_id,
              "pad_token_id": eos_id, "tie_word_embeddings": False}
    torch.manual_seed(seed)
    if arch == "mistral":
        return MistralForCausalLM(MistralConfig(sliding_window=None, **common))
    return LlamaForCausalLM(LlamaConfig(**common))


def build_tiny(name: str, texts: Iterable[str], out_dir: Path, *, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train the tokenizer, build the model and save both to `out_dir` (loadable by from_pretrained)."""
    preset = preset_of(name)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = build_model(preset, len(tokenizer), bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id,
                        seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    log.info("built %s (%d parameters, vocab %d) in %s", name, sum(p.numel() for p in model.parameters()),
             len(tokenizer), out_dir)
    return out_dir
