"""Job specs: building one (CLI, API) and checking one before its first paid call (worker, CLI).

Kept free of the HTTP client so that the API image, which has no `openai`, can import it to
validate and queue jobs exactly as the worker will read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from magdi.datasets import FORMATS, load_questions
from magdi.mag import JobSpec, Question
from services.generator.panel import PanelConfig, parse_panel, resolve_keys
from services.generator.protocols import ProtocolConfig


def default_format(dataset: str) -> str:
    """The dataset name when it is a known format (gsm8k, ecqa, ...), else detection ("auto")."""
    return dataset.lower() if dataset.lower() in FORMATS else "auto"


def build_spec(*, name: str, dataset: str, data_path: str, data_format: str | None, offset: int,
               limit: int | None, panel: PanelConfig, protocol: ProtocolConfig) -> JobSpec:
    return JobSpec(name=name, dataset=dataset, data_path=data_path, data_format=data_format, offset=offset,
                   limit=limit, panel=panel.public_dict(), protocol=protocol.model_dump(mode="json"))


@dataclass
class Prepared:
    """Everything checked before the first paid call."""

    spec: JobSpec
    panel: PanelConfig
    protocol: ProtocolConfig
    questions: list[Question]
    keys: dict[str, str] = field(repr=False)


def prepare(spec: JobSpec, env: Mapping[str, str] | None = None) -> Prepared:
    """Validate panel, keys, protocol and data of a spec (raises ValueError subclasses with advice).

    Questions come from the spec itself (inline, POST /v1/debates) or from its data file.
    """
    panel = parse_panel(spec.panel, f"job {spec.name} panel")
    protocol = ProtocolConfig.model_validate(spec.protocol)
    protocol.check_agents(panel.agent_names)
    keys = resolve_keys(panel, env)
    if spec.questions:
        questions = list(spec.questions)
    else:
        assert spec.data_path is not None  # JobSpec guarantees one source
        questions = load_questions(spec.data_path, spec.data_format or default_format(spec.dataset),
                                   dataset=spec.dataset, offset=spec.offset, limit=spec.limit)
    first: dict[tuple[str, str], int] = {}
    for i, q in enumerate(questions):
        j = first.setdefault((q.id, q.qid), i)
        if j != i:
            raise ValueError(f"job {spec.name}: questions {j} and {i} are the same record (question {q.qid!r} of "
                             f"{q.dataset!r}); they would be one debate")
    return Prepared(spec, panel, protocol, questions, keys)
