"""Job specs: building one (CLI, API) and checking one before its first paid call (worker, CLI).

Kept free of the HTTP client so that everything a spec needs checking for is importable without
`openai`. `prepare` is where the operator's policy (`magdi.policy`) meets a spec: the worker binds
every seat to ITS declared endpoints, applies the caps and reads data only under its data root;
`magdi generate` (the operator at the command line) keeps inline endpoints and any data path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from magdi.datasets import default_format, load_questions
from magdi.errors import UserError
from magdi.mag import JobSpec, Question
from magdi.panel import PanelConfig, resolve_keys
from magdi.policy import OperatorPolicy, Who
from magdi.protocol import ProtocolConfig


def build_spec(*, name: str, dataset: str, data_path: str, data_format: str | None, offset: int,
               limit: int | None, panel: PanelConfig, protocol: ProtocolConfig) -> JobSpec:
    return JobSpec(name=name, dataset=dataset, data_path=data_path, data_format=data_format, offset=offset,
                   limit=limit, panel=panel, protocol=protocol)


@dataclass
class Prepared:
    """Everything checked before the first paid call; `panel` has the declared endpoints filled in."""

    spec: JobSpec
    panel: PanelConfig
    protocol: ProtocolConfig
    questions: list[Question]
    keys: dict[str, str] = field(repr=False)


def prepare(spec: JobSpec, env: Mapping[str, str] | None = None, *, policy: OperatorPolicy | None = None,
            who: Who = Who.OPERATOR) -> Prepared:
    """Bind the panel, check protocol, keys and data of a spec (raises ValueError subclasses with advice).

    Questions come from the spec itself (inline, POST /v1/debates) or from its data file; for
    `Who.WORKER` that file must lie under the policy's data root (checked with realpath).
    """
    policy = policy if policy is not None else OperatorPolicy()
    panel = policy.bind(spec.panel, who)
    protocol = spec.protocol
    protocol.check_agents(panel.agent_names)
    keys = resolve_keys(panel, env)
    if spec.questions:
        questions = list(spec.questions)
    else:
        assert spec.data_path is not None  # JobSpec guarantees one source
        path = policy.confine(spec.data_path) if who is not Who.OPERATOR else spec.data_path
        questions = load_questions(path, spec.data_format or default_format(spec.dataset),
                                   dataset=spec.dataset, offset=spec.offset, limit=spec.limit)
    first: dict[tuple[str, str], int] = {}
    for i, q in enumerate(questions):
        j = first.setdefault((q.id, q.qid), i)
        if j != i:
            raise UserError(f"job {spec.name}: questions {j} and {i} are the same record (question {q.qid!r} of "
                             f"{q.dataset!r}); they would be one debate")
    if who is not Who.OPERATOR:
        policy.check_caps(questions=len(questions), max_rounds=protocol.max_rounds)
    return Prepared(spec, panel, protocol, questions, keys)
