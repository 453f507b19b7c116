"""Trainer benchmark: one forward pass for positives + negatives vs the reference's two, and the loader.

    .venv/bin/python -m benchmarks.trainer                   # CPU, tiny:llama-256, < 2 min
    .venv/bin/python -m benchmarks.trainer --neo4j           # also stream from MAGDI_NEO4J_* (writes MAGs there!)
    .venv/bin/python -m benchmarks.trainer --mags 16 --repeats 5 --preset llama-64

(Run it as a module from the repository root: as a script, this file would shadow the `trainer` package.)

What is timed, on the SAME micro-batch of MAGs and the same weights:
- ours (`mode=end_to_end`): one optimisation step (forward, backward, AdamW step) where every node
  of the batch goes through the LoRA student in ONE forward pass, and NLL, GCN features and
  ranking scores all come from it;
- baseline (`mode=reference`): the reference's structure, positives (NLL + e+) and negatives (e-)
  in two separate passes, the GCN on cached frozen base-model features (cache filled before
  timing, which favours the baseline). The real reference also repeats positives once per pair,
  so it runs more tokens than this baseline.
- the streaming loader (jsonl, and Neo4j with --neo4j): seconds to produce one micro-batch
  (read, split, tokenise, graph, collate), to compare with the step time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import Data

from magdi.formats.jsonl import dump
from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from trainer.config import load_config
from trainer.data import MAGCollator, MAGStream, make_loader
from trainer.graphs import GraphSpec, MAGEncoder, node_texts, plan_graph
from trainer.model import build_student, load_tokenizer
from trainer.sources import JsonlSource, Neo4jSource
from trainer.tiny import build_tiny

WORDS = ("apples pears boxes trains minutes dollars pages marbles tickets miles hours cookies "
         "students chairs pencils bottles").split()


def synthetic_mags(n: int, agents: int = 3, rounds: int = 2, seed: int = 0) -> list[Debate]:
    """GSM8K-like MAGs: ~60-word questions, ~80-word reasoning, mixed correctness."""
    rng = random.Random(seed)
    names = [f"agent{k}" for k in range(agents)]
    out = []
    for i in range(n):
        a, b, c = rng.randint(2, 90), rng.randint(2, 90), rng.randint(2, 9)
        gold = (a + b) * c
        filler = " ".join(rng.choice(WORDS) for _ in range(40))
        q = Question(dataset="bench", qid=str(i), task=TaskType.NUMBER, gold_answer=str(gold),
                     text=f"A shop has {a} {rng.choice(WORDS)} and gets {b} more, {c} times a week. {filler}. How many?")
        responses = []
        for r in range(rounds):
            for name in names:
                ok = rng.random() < 0.6
                ans = gold if ok else gold + rng.randint(1, 20)
                steps = " ".join(f"Step {s}: we count {rng.choice(WORDS)} and get {rng.randint(1, 500)}." for s in range(6))
                responses.append(Response(agent=name, round=r, reasoning=f"{steps} So ({a} + {b}) * {c} = {ans}.",
                                          answer=str(ans), correct=ok, tokens_out=rng.randint(150, 300)))
        out.append(Debate(question=q, panel=[Agent(name=x, model=x) for x in names], responses=responses,
                          edges=full_visibility_edges(responses), rounds_used=rounds))
    return out


def pair_rows(item: Data) -> Data:
    """The reference's view of a MAG: one (positive, negative) row pair per ranking pair.

    `utils.prepare_batch` turns each MAG into max(|P|, |N|) pairs and runs every pair's positive
    (NLL + e+) and negative (e-) through the student, so repeated positives cost repeated passes.
    """
    pos, neg = item.pair_index[:, item.pair_has_neg]
    rows = torch.cat([pos, neg]).tolist()
    seqs = torch.split(item.tokens, item.length.tolist())
    p = len(pos)
    return Data(num_nodes=2 * p, tokens=torch.cat([seqs[i] for i in rows]), length=item.length[rows],
                prompt_length=item.prompt_length[rows], y=item.y[rows], edge_index=torch.zeros(2, 0, dtype=torch.long),
                nll_mask=torch.arange(2 * p) < p, pair_index=torch.stack([torch.arange(p), torch.arange(p, 2 * p)]),
                pair_has_neg=torch.ones(p, dtype=torch.bool))


def make_student(mode: str, base: str, overrides: list[str]):
    cfg = load_config(None, [f"mode={mode}", "model.precision=fp32", *overrides], env={})
    torch.manual_seed(0)  # same LoRA and head init for every variant
    student, _ = build_student(cfg, base, torch.device("cpu"))
    optimizer = torch.optim.AdamW([{"params": student.lora_parameters(), "lr": 1e-4},
                                   {"params": student.head_parameters(), "lr": 1e-3}])
    student.train()
    return student, optimizer


def one_step(student, optimizer, batch) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    out = student(batch)
    out["loss"].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, {k: round(float(out[k]), 4) for k in ("nll", "node", "rank") if k in out}


def time_loader(source, tokenizer, spec: GraphSpec, batch_size: int, batches: int) -> float:
    stream = MAGStream(source, tokenizer, spec, split=None, shuffle_buffer=16)
    loader = make_loader(stream, batch_size=batch_size, pad_id=tokenizer.pad_token_id)
    t0 = time.perf_counter()
    n = sum(1 for _ in zip(range(batches), loader, strict=False))
    return (time.perf_counter() - t0) / max(1, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="llama-256", help="tiny preset (llama-64, llama-256, mistral-64)")
    parser.add_argument("--mags", type=int, default=4, help="MAGs per micro-batch")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per variant (median)")
    parser.add_argument("--neo4j", action="store_true", help="also time streaming from Neo4j (MAGDI_NEO4J_*)")
    args = parser.parse_args()

    debates = synthetic_mags(max(32, 4 * args.mags))
    spec = GraphSpec(max_length=512)
    work = Path(tempfile.mkdtemp(prefix="magdi-bench-"))
    texts = [t for d in debates for t in node_texts(d, plan_graph(d, spec).nodes, spec)[1]]
    base = str(build_tiny(f"tiny:{args.preset}", texts, work / "base", vocab_size=1000))
    tokenizer = load_tokenizer(base)
    enc = MAGEncoder(tokenizer, spec)
    batch = MAGCollator(tokenizer.pad_token_id)([enc.encode(d) for d in debates[: args.mags]])
    real_tokens = int(batch.attention_mask.sum())
    print(f"model tiny:{args.preset}, torch threads {torch.get_num_threads()}, batch: {args.mags} MAGs, "
          f"{batch.num_nodes} nodes, {int(batch.pair_has_neg.sum())} ranking pairs, {real_tokens} real tokens")

    items = [enc.encode(d) for d in debates[: args.mags]]
    ref_batch = MAGCollator(tokenizer.pad_token_id)([pair_rows(it) for it in items])
    overrides = ["lora.target_modules=q_proj,v_proj", "loss.gcn_hidden=512"]
    variants = {
        "ours: end_to_end, ONE pass over the MAGs' nodes": (make_student("end_to_end", base, overrides), batch),
        "baseline: reference mode, TWO passes (pos, neg)": (make_student("reference", base, overrides), batch),
        "reference as written: TWO passes over pair rows": (make_student("reference", base, overrides), ref_batch),
    }
    for (student, _), b in variants.values():
        if student.mode == "reference":
            student.frozen_embeddings(b)  # computed once, before training, in the reference: not timed
    times: dict[str, list[float]] = {name: [] for name in variants}
    losses: dict[str, dict[str, float]] = {}
    for i in range(args.repeats + 1):  # interleaved, so load on a shared machine hits every variant alike
        for name, ((student, optimizer), b) in variants.items():
            seconds, values = one_step(student, optimizer, b)
            if i == 0:
                losses[name] = values  # warm-up step: same weights everywhere, so comparable losses
            else:
                times[name].append(seconds)
    print(f"pair-row batch of the reference: {ref_batch.num_nodes} rows, {int(ref_batch.attention_mask.sum())} real tokens")
    ours = statistics.median(times[next(iter(variants))])
    for name in variants:
        step = statistics.median(times[name])
        print(f"step, {name:50s} {step * 1000:8.1f} ms  ({step / ours:.2f}x ours)  first-step losses {losses[name]}")

    path = work / "mags.jsonl"
    dump(debates, path)
    loader_jsonl = time_loader(JsonlSource(path), tokenizer, spec, args.mags, 8)
    print(f"loader, jsonl: {loader_jsonl * 1000:8.1f} ms per micro-batch = {loader_jsonl / ours:.1%} of a step")
    if args.neo4j:
        from magdi.store.open import open_store

        with open_store() as store:
            tagged = [d.model_copy(update={"job_id": "bench-trainer"}) for d in debates]
            store.write_debates(tagged)
        loader_db = time_loader(Neo4jSource(job_id="bench-trainer", batch_size=64), tokenizer, spec, args.mags, 8)
        print(f"loader, neo4j: {loader_db * 1000:8.1f} ms per micro-batch = {loader_db / ours:.1%} of a step")


if __name__ == "__main__":
    main()
