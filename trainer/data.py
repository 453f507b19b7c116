"""Streaming MAG dataset, shuffle buffer and the collator that batches whole MAGs.

`MAGStream` reads MAGs lazily from a source (Neo4j pages or jsonl lines), keeps one split, shards
them over DDP ranks and DataLoader workers, shuffles through a bounded buffer and yields one PyG
`Data` per MAG. Memory stays constant whatever the number of MAGs. Order is a pure function of
(seed, epoch, shard), which is what makes exact resume possible: the trainer replays an epoch's
stream and drops the micro-batches it already trained on.

`MAGCollator` turns a list of MAGs into one disjoint-union `Batch` (node ids and ranking pairs
offset into the batch's numbering by PyG) plus a right-padded token matrix for all nodes. It
never writes into the items (the reference's collator padded its dataset in place, docs/method.md D8).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch_geometric.data import Batch, Data

from magdi.mag import Debate
from trainer.graphs import DataStats, GraphSpec, MAGEncoder
from trainer.sources import DebateSource, Split, split_of

log = logging.getLogger(__name__)


def debates_in_split(source: DebateSource, split: Split | None, fractions: list[float], salt: str) -> Iterator[Debate]:
    """The source's MAGs whose question falls in `split` (None = all)."""
    for debate in source.iter_debates():
        if split is None or split_of(debate.question.id, fractions, salt) == split:
            yield debate


def shuffled(items: Iterable[Data], buffer_size: int, rng: random.Random) -> Iterator[Data]:
    """Reservoir-style streaming shuffle: memory bounded by `buffer_size` items."""
    buffer: list[Data] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = rng.randrange(buffer_size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class MAGStream(IterableDataset):
    """MAGs of one split as PyG graphs, streamed, sharded and shuffled.

    Worker-safe: the source opens its own Neo4j driver inside `__iter__`, i.e. inside each worker
    process. MAG i of the split goes to shard i mod (world_size x num_workers). `stats` holds the
    skip/truncation counters of the last iteration run in this process (worker processes log
    theirs when they finish).
    """

    def __init__(self, source: DebateSource, tokenizer: object, spec: GraphSpec, *, split: Split | None = "train",
                 fractions: list[float] | None = None, salt: str = "magdi", shuffle_buffer: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        self.source = source
        self.tokenizer = tokenizer
        self.spec = spec
        self.split = split
        self.fractions = fractions or [0.8, 0.1, 0.1]
        self.salt = salt
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0
        self.stats = DataStats()

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle order per epoch, the same one every time this epoch is replayed."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Data]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = _rank_world()
        shard, shards = rank * workers + worker, world * workers
        encoder = MAGEncoder(self.tokenizer, self.spec)
        self.stats = encoder.stats
        rng = random.Random(f"{self.seed}/{self.epoch}/{shard}")

        def graphs() -> Iterator[Data]:
            for i, debate in enumerate(debates_in_split(self.source, self.split, self.fractions, self.salt)):
                if i % shards == shard:
                    data = encoder.encode(debate)
                    if data is not None:
                        yield data

        yield from shuffled(graphs(), self.shuffle_buffer, rng)
        s = encoder.stats
        if s.skipped_no_nodes or s.skipped_no_target or s.nodes_truncated or s.no_correct_kept:
            log.info("epoch %d shard %d/%d: %s", self.epoch, shard, shards, s.as_dict())


@dataclass
class MAGCollator:
    """List of MAG graphs -> one `Batch` with `input_ids`/`attention_mask` of shape (N_nodes, T).

    Padding is on the right: positions then equal those of the unpadded text, and the pooling's
    position weights 1..L count real tokens whatever the padding (D6). Generation pads on the left.
    """

    pad_id: int

    def __call__(self, items: list[Data]) -> Batch:
        batch = Batch.from_data_list(items, exclude_keys=["tokens"])  # new tensors: items untouched
        lengths = batch.length.tolist()
        width = max(lengths)
        input_ids = torch.full((len(lengths), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
        row = 0
        for item in items:
            for seq in torch.split(item.tokens, item.length.tolist()):
                input_ids[row, : len(seq)] = seq
                attention_mask[row, : len(seq)] = 1
                row += 1
        batch.input_ids = input_ids
        batch.attention_mask = attention_mask
        return batch


def make_loader(dataset: MAGStream, *, batch_size: int, pad_id: int, num_workers: int = 0) -> DataLoader:
    """Micro-batches of `batch_size` whole MAGs (the last one may be smaller).

    The loader gets its own generator: by default each new DataLoader iterator draws a seed from
    the GLOBAL torch RNG, which would shift the dropout masks of a resumed run.
    """
    generator = torch.Generator().manual_seed(dataset.seed * 1000 + dataset.epoch)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=MAGCollator(pad_id), num_workers=num_workers,
                      persistent_workers=False, generator=generator)
