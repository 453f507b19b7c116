"""Deterministic identities.

Every write to Neo4j is a MERGE on ids computed here, so a retried transaction, a resumed job or a
second import of the same file can never create a second copy of a question, debate or response.

- A question's id is its CONTENT within a dataset: normalised text, options and gold answer. Two
  files under one dataset name therefore share a node only for the same question, never for the
  same record index; the store refuses a write that would change a stored question.
- A generated debate's id is (job, question id, record id): a resume recomputes the same ids, and
  two records of one question in a job's file stay two debates.
- An imported debate (no job) has no run to name it, so its id also covers what it holds (the
  question record, panel, protocol, responses and edges): re-importing a file adds nothing, while
  another file's different debate on the same question is kept beside it instead of replacing it.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from typing import Any


def digest(*parts: Any, length: int = 16) -> str:
    """Short stable hex digest of JSON-serialisable parts (order matters)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def normalize_text(text: str) -> str:
    """The form question identity is computed on: Unicode NFC, whitespace runs as one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def question_id(dataset: str, text: str, gold_answer: str | None, options: Sequence[str] = ()) -> str:
    """`q-` + 96 bits of the question's content: dataset, normalised text, options and gold answer."""
    gold = None if gold_answer is None else normalize_text(gold_answer)
    return f"q-{digest(dataset, normalize_text(text), [normalize_text(o) for o in options], gold, length=24)}"


def debate_id(job_id: str | None, question: str, qid: str, content: str | None = None) -> str:
    """`d-` + 96 bits of (job, question id, record id[, content digest of a job-less debate])."""
    return f"d-{digest(job_id or '', question, qid, content or '', length=24)}"


def response_id(debate: str, agent: str, round_: int) -> str:
    return f"{debate}/{agent}/{round_}"


def prompt_part_id(role: str, content: str) -> str:
    """A chat message, content-addressed (128 bits): stored once however many prompts repeat it."""
    return f"p-{digest(role, content, length=32)}"


def text_qid(text: str) -> str:
    """A question id for sources that have none: derived from the text, so re-imports agree."""
    return f"t{digest(text.strip(), length=12)}"
