"""Trainer fixtures: varied synthetic MAGs, a jsonl file of them and a tiny CPU config.

The MAGs follow `tests/conftest.py::make_debate` (valid responses, INFORMS edges from
`full_visibility_edges`) but with varied questions, reasoning and answers, so node texts differ
and correctness is visible in the text (right vs wrong arithmetic).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from magdi.formats.jsonl import dump
from magdi.mag import Agent, Debate, ParseStatus, Question, Response, TaskType, full_visibility_edges
from trainer.config import TrainConfig, load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

NAMES = ("Ann", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hal")
AGENTS = ("alice", "bob", "carol")


def synthetic_debate(i: int, *, agents: tuple[str, ...] = AGENTS, rounds: int = 2, dataset: str = "gsm8k",
                     pattern: str = "mixed", absent_last: bool = False, job_id: str | None = None) -> Debate:
    """A varied MAG for question i.

    pattern: "mixed" (random right/wrong, at least one of each), "none_correct", "all_correct",
    "only_absent" (every response absent). `absent_last` makes the last agent absent in the last
    round (a consensus-style gap).
    """
    rng = random.Random(i)
    name = NAMES[i % len(NAMES)]
    a, b = rng.randint(2, 60), rng.randint(1, 40)
    gold = a + b
    q = Question(dataset=dataset, qid=f"s{i}", text=f"{name} has {a} apples and buys {b} more. How many apples now?",
                 task=TaskType.NUMBER, gold_answer=str(gold))
    responses = []
    cells = [(k, r) for r in range(rounds) for k in range(len(agents))]
    if pattern == "mixed":
        flags = [rng.random() < 0.5 for _ in cells]
        flags[0], flags[1 % len(flags)] = True, False
    else:
        flags = [pattern == "all_correct"] * len(cells)
    for (k, rnd), ok in zip(cells, flags, strict=True):
        agent = agents[k]
        if pattern == "only_absent" or (absent_last and rnd == rounds - 1 and k == len(agents) - 1):
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.ABSENT))
            continue
        answer = gold if ok else (a - b if a != 2 * b else a * b)
        op = "+" if ok else ("-" if a != 2 * b else "*")
        lead = f"I agree with {agents[(k + 1) % len(agents)]}. " if rnd > 0 and rng.random() < 0.7 else ""
        reasoning = f"{lead}{name} starts with {a} apples. Then {a} {op} {b} = {answer}."
        responses.append(Response(agent=agent, round=rnd, reasoning=reasoning, answer=str(answer), correct=ok,
                                  confidence=0.9, model=f"{agent}-model", tokens_in=80 + 10 * rnd,
                                  tokens_out=30 + 5 * k + rnd))
    return Debate(question=q, job_id=job_id, panel=[Agent(name=x, model=f"{x}-model") for x in agents],
                  responses=responses, edges=full_visibility_edges(responses), rounds_used=rounds)


@pytest.fixture
def debates() -> list[Debate]:
    return [synthetic_debate(i) for i in range(24)]


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[[list[Debate], str], Path]:
    def write(items: list[Debate], name: str = "mags.jsonl") -> Path:
        path = tmp_path / name
        dump(items, path)
        return path

    return write


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """A TrainConfig for a tiny CPU run on a jsonl file; extra `key=value` overrides win."""

    def make(source: Path, *overrides: str, out: str = "run") -> TrainConfig:
        base = [
            f"data.source=jsonl:{source}", f"run.output_dir={tmp_path / out}", "model.base=tiny:llama-64",
            "model.precision=fp32", "model.tiny_vocab_size=400", "lora.r=4", "lora.alpha=8", "loss.gcn_hidden=32",
            "optim.lr=1e-3", "optim.head_lr=1e-2", "optim.batch_size=2", "optim.grad_accum=1",
            "optim.warmup_steps=0", "optim.epochs=1", "data.max_length=128", "data.shuffle_buffer=4",
            "data.split_fractions=[1.0, 0.0, 0.0]", "run.progress=false", "run.tensorboard=false",
            "run.save_every=0",
        ]
        return load_config(None, [*base, *overrides], env={})

    return make


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny tensors on a shared 2-core box: intra-op threads only add contention (5-10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="synth")
def synth_fixture() -> Callable[..., Debate]:
    return synthetic_debate


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE tokenizer trained on synthetic node texts (the tiny models' kind)."""
    from trainer.graphs import GraphSpec, node_texts, plan_graph
    from trainer.tiny import train_tokenizer

    texts = []
    for i in range(40):
        d = synthetic_debate(i)
        plan = plan_graph(d, GraphSpec())
        texts.extend(node_texts(d, plan.nodes, GraphSpec())[1])
    return train_tokenizer(texts, vocab_size=400)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny student trained for a few steps on 16 MAGs (half of the questions held out as test)."""
    from trainer.train import train

    root = tmp_path_factory.mktemp("trained")
    path = root / "mags.jsonl"
    dump([synthetic_debate(i) for i in range(16)], path)
    overrides = [
        f"data.source=jsonl:{path}", f"run.output_dir={root / 'run'}", "model.precision=fp32",
        "model.tiny_vocab_size=400", "lora.r=4", "lora.alpha=8", "loss.gcn_hidden=32", "optim.lr=1e-2",
        "optim.head_lr=1e-2", "optim.batch_size=2", "optim.grad_accum=1", "optim.warmup_steps=0",
        "optim.max_steps=3", "data.max_length=128", "data.split_fractions=[0.5, 0.0, 0.5]",
        "run.progress=false", "run.save_every=0",
    ]
    cfg = load_config(None, overrides, env={})
    return cfg, train(cfg), path


@pytest.fixture(scope="session")
def tiny_base(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + the session tokenizer, saved like a hub model."""
    from trainer.tiny import build_model

    path = tmp_path_factory.mktemp("tiny-base")
    model = build_model("llama-64", len(tokenizer), bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def make_student(tiny_base: Path):
    """Factory: a student on the tiny base; LoRA B randomised so the adapter changes the output."""
    import torch

    from trainer.model import build_student

    def make(*overrides: str, seed: int = 0):
        cfg = load_config(None, ["model.precision=fp32", "loss.gcn_hidden=32", "lora.r=4", "lora.alpha=8",
                                 *overrides], env={})
        torch.manual_seed(seed)
        student, _ = build_student(cfg, str(tiny_base), torch.device("cpu"))
        with torch.no_grad():
            for name, p in student.lm.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.05)
        return student

    return make
