"""Streaming, splitting, sharding and collation of MAGs."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from trainer.data import MAGCollator, MAGStream, make_loader
from trainer.graphs import GraphSpec, MAGEncoder, question_hash
from trainer.sources import DataError, JsonlSource, split_of
from trainer.train import train


def test_split_is_deterministic_disjoint_and_complete() -> None:
    ids = [f"q-{i}" for i in range(2000)]
    fractions = [0.8, 0.1, 0.1]
    first = {q: split_of(q, fractions) for q in ids}
    assert first == {q: split_of(q, fractions) for q in ids}  # same answer every time
    counts = Counter(first.values())
    assert set(counts) == {"train", "val", "test"} and sum(counts.values()) == len(ids)  # each id in exactly one
    assert 0.75 < counts["train"] / len(ids) < 0.85
    other = {q: split_of(q, fractions, salt="other") for q in ids}
    assert other != first  # the salt draws another split
    assert all(split_of(q, [1.0, 0.0, 0.0]) == "train" for q in ids[:50])


def test_every_debate_of_a_question_lands_in_the_same_split(synth, write_jsonl, tokenizer) -> None:
    debates = [synth(i, job_id=job) for i in range(30) for job in ("job-a", "job-b")]
    path = write_jsonl(debates)
    by_split = {}
    for split in ("train", "val", "test"):
        stream = MAGStream(JsonlSource(path), tokenizer, GraphSpec(), split=split, fractions=[0.5, 0.25, 0.25])
        by_split[split] = Counter(d.qid for d in stream)
    for split, counts in by_split.items():
        assert all(n == 2 for n in counts.values()), split  # both jobs' MAGs of a question together
    assert not set(by_split["train"]) & set(by_split["test"]) and not set(by_split["train"]) & set(by_split["val"])


def test_batch_is_a_disjoint_union_with_pairs_offset_into_it(tokenizer, synth) -> None:
    enc = MAGEncoder(tokenizer, GraphSpec())
    items = [enc.encode(synth(i, rounds=r)) for i, r in ((0, 2), (1, 3), (2, 1))]
    batch = MAGCollator(tokenizer.pad_token_id)(items)
    assert batch.num_nodes == sum(d.num_nodes for d in items) and batch.num_graphs == 3
    assert batch.input_ids.shape == (batch.num_nodes, int(batch.length.max()))
    offset = 0
    for g, item in enumerate(items):
        lo, hi = offset, offset + item.num_nodes
        assert (batch.batch[lo:hi] == g).all()
        expected_pairs = item.pair_index + offset
        got = batch.pair_index[:, (batch.pair_index[0] >= lo) & (batch.pair_index[0] < hi)]
        assert torch.equal(got, expected_pairs)
        offset = hi


def test_every_ranking_pair_and_graph_belongs_to_one_question(tokenizer, synth) -> None:
    enc = MAGEncoder(tokenizer, GraphSpec())
    batch = MAGCollator(tokenizer.pad_token_id)([enc.encode(synth(i)) for i in range(6)])
    pos, neg = batch.pair_index
    assert torch.equal(batch.node_qhash[pos], batch.node_qhash[neg])  # docs/method.md D2: never another question's node
    assert torch.equal(batch.batch[pos], batch.batch[neg])
    for g, qid in enumerate(batch.qid):
        assert (batch.node_qhash[batch.batch == g] == question_hash(qid)).all()
    src, dst = batch.edge_index
    assert torch.equal(batch.batch[src], batch.batch[dst])  # no edge between MAGs


def test_collation_pads_copies_and_never_mutates_the_items(tokenizer, synth) -> None:
    enc = MAGEncoder(tokenizer, GraphSpec())
    items = [enc.encode(synth(i)) for i in range(4)]
    before = copy.deepcopy(items)
    collate = MAGCollator(tokenizer.pad_token_id)
    first = collate(items)
    second = collate(items)  # D8: a second epoch sees the same, unpadded items
    for a, b in zip(items, before, strict=True):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.length, b.length)
    assert torch.equal(first.input_ids, second.input_ids)
    real = first.attention_mask.sum(dim=1)
    assert torch.equal(real, first.length)
    assert (first.input_ids[first.attention_mask == 0] == tokenizer.pad_token_id).all()


def test_shuffle_is_deterministic_per_epoch_and_differs_between_epochs(tokenizer, synth, write_jsonl) -> None:
    path = write_jsonl([synth(i) for i in range(20)])
    stream = MAGStream(JsonlSource(path), tokenizer, GraphSpec(), split=None, shuffle_buffer=8, seed=3)

    def order(epoch: int) -> list[str]:
        stream.set_epoch(epoch)
        return [d.qid for d in stream]

    assert order(0) == order(0) and sorted(order(0)) == sorted(order(1)) and order(0) != order(1)
    assert len(set(order(0))) == 20


def test_workers_read_disjoint_shards(tokenizer, synth, write_jsonl) -> None:
    path = write_jsonl([synth(i) for i in range(10)])
    stream = MAGStream(JsonlSource(path), tokenizer, GraphSpec(), split=None)
    loader = make_loader(stream, batch_size=3, pad_id=tokenizer.pad_token_id, num_workers=2)
    seen = [qid for batch in loader for qid in batch.qid]
    assert sorted(seen) == sorted(synth(i).question.id for i in range(10))


def test_stream_counts_what_it_skips(tokenizer, synth, write_jsonl) -> None:
    path = write_jsonl([synth(0), synth(1, pattern="only_absent"), synth(2, pattern="none_correct"), synth(3)])
    stream = MAGStream(JsonlSource(path), tokenizer, GraphSpec(keep_without_correct=False), split=None)
    assert len(list(DataLoader(stream, batch_size=None))) == 2
    assert (stream.stats.skipped_no_nodes, stream.stats.skipped_no_target, stream.stats.mags_used) == (1, 1, 2)


def test_empty_or_missing_source_is_a_clear_error(tmp_path, tiny_config, write_jsonl, synth) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no usable training MAGs"):
        train(tiny_config(empty))
    with pytest.raises(DataError, match="not a file"):
        train(tiny_config(tmp_path / "missing.jsonl"))
    only_absent = write_jsonl([synth(i, pattern="only_absent") for i in range(3)], "absent.jsonl")
    with pytest.raises(DataError, match="skipped_no_nodes': 3"):
        train(tiny_config(only_absent))
