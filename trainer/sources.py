"""Where MAGs come from (Neo4j or a jsonl export) and which split a question belongs to.

A source is a small picklable description, not an open connection: `iter_debates()` opens the
Neo4j driver itself, so each DataLoader worker (a separate process) gets its own driver, as the
driver requires (one per process, sessions never shared).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from magdi.errors import UserError
from magdi.mag import Debate

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


class DataError(UserError):
    """Training data that cannot be used (empty source, unreadable file); the message says which."""


class DebateSource(Protocol):
    def iter_debates(self) -> Iterator[Debate]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class JsonlSource:
    """MAGs from our lossless jsonl export (`magdi export --format jsonl`), in file order."""

    path: Path
    dataset: str | None = None
    job_id: str | None = None

    def iter_debates(self) -> Iterator[Debate]:
        from magdi.formats import FormatError
        from magdi.formats.jsonl import iter_file
        from magdi.store.job_names import matches as job_matches

        if not self.path.is_file():
            raise DataError(f"data.source: {self.path} is not a file")
        try:
            for debate in iter_file(self.path):
                if self.dataset is not None and debate.question.dataset != self.dataset:
                    continue
                if self.job_id is not None and not job_matches(debate.job_id, self.job_id):
                    continue
                yield debate
        except FormatError as exc:
            raise DataError(str(exc)) from None

    def describe(self) -> str:
        return f"jsonl:{self.path}" + _filters(self.dataset, self.job_id)


@dataclass(frozen=True)
class Neo4jSource:
    """MAGs streamed from Neo4j in debate-id order (keyset pages of `batch_size`).

    `settings` None means the process environment (MAGDI_NEO4J_*), read when iterating.
    """

    settings: object | None = None  # magdi.settings.Neo4jSettings; typed loosely to keep pickling cheap
    dataset: str | None = None
    job_id: str | None = None
    batch_size: int = 256

    def iter_debates(self) -> Iterator[Debate]:
        from magdi.settings import Neo4jSettings, get_settings
        from magdi.store.connection import open_driver
        from magdi.store.graph_store import DebateFilter, GraphStore
        from magdi.store.job_names import UnknownJob, resolve_job_id

        settings = self.settings if isinstance(self.settings, Neo4jSettings) else get_settings()
        driver = open_driver(settings)
        try:
            store = GraphStore(driver, database=settings.neo4j_database, query_timeout_s=settings.query_timeout_s)
            try:
                job_id = resolve_job_id(store, self.job_id) if self.job_id is not None else None
            except UnknownJob as exc:
                raise DataError(f"data.job_id: {exc}") from None
            flt = DebateFilter(dataset=self.dataset, job_id=job_id)
            yield from store.iter_debates(flt, batch_size=self.batch_size)
        finally:
            driver.close()

    def describe(self) -> str:
        return "neo4j" + _filters(self.dataset, self.job_id)


def _filters(dataset: str | None, job_id: str | None) -> str:
    parts = [f"dataset={dataset}"] * (dataset is not None) + [f"job_id={job_id}"] * (job_id is not None)
    return f" ({', '.join(parts)})" if parts else ""


def open_source(source: str, *, dataset: str | None = None, job_id: str | None = None,
                batch_size: int = 256, settings: object | None = None) -> DebateSource:
    """`neo4j` or `jsonl:PATH` (the `data.source` config value) -> a source."""
    if source == "neo4j":
        return Neo4jSource(settings=settings, dataset=dataset, job_id=job_id, batch_size=batch_size)
    if source.startswith("jsonl:"):
        return JsonlSource(Path(source[len("jsonl:"):]), dataset=dataset, job_id=job_id)
    raise DataError(f"data.source: must be 'neo4j' or 'jsonl:PATH', got {source!r}")


def split_of(question_id: str, fractions: Sequence[float], salt: str = "magdi") -> Split:
    """Deterministic split of a question: a hash of (salt, id) mapped to [0, 1).

    Every debate of a question lands in the same split (no question leaks from train to test),
    and adding MAGs never moves an existing question to another split.
    """
    digest = hashlib.sha256(f"{salt}\x00{question_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    train, val = fractions[0], fractions[1]
    if u < train:
        return "train"
    if u < train + val:
        return "val"
    return "test"
