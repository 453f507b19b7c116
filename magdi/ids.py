"""Deterministic identities.

Every write to Neo4j is a MERGE on ids computed here, so a retried transaction, a resumed job or a
second import of the same file can never create a second copy of a question, debate or response.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(*parts: Any, length: int = 16) -> str:
    """Short stable hex digest of JSON-serialisable parts (order matters)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def question_id(dataset: str, qid: str) -> str:
    return f"q-{digest(dataset, qid)}"


def debate_id(job_id: str | None, dataset: str, qid: str) -> str:
    return f"d-{digest(job_id or '', dataset, qid)}"


def response_id(debate: str, agent: str, round_: int) -> str:
    return f"{debate}/{agent}/{round_}"


def text_qid(text: str) -> str:
    """A question id for sources that have none: derived from the text, so re-imports agree."""
    return f"t{digest(text.strip(), length=12)}"
