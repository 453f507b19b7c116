"""SIMULATED teacher panel: a local OpenAI-compatible server that replays real model outputs.

This is a SIMULATION, not a language model. No weights can be downloaded where magdi is built
and tested, so the demo, the tests and the benchmarks talk to this server instead of OpenAI.
Round-0 answers are real solutions that four real models (``6b_finetuning``,
``6b_verification``, ``175b_finetuning``, ``175b_verification``) wrote for the GSM8K test
questions; discussion rounds follow a documented, seeded rule (`policy`); faults such as rate
limits, 5xx, hangs and malformed output are injected on request (`config`, `faults`). The
generator reaches it exactly as it reaches OpenAI (``AsyncOpenAI(base_url=...)``); responses
are marked ``x-magdi-simulated: true`` and ``system_fingerprint: "magdi-simulated-teacher"``.

- `replay`: loads the recorded solutions and finds the question inside a prompt.
- `policy`: round-0 replay, confidence rule, debate-block parsing, switch rule.
- `chat`: the replay behind one chat completion, shared by direct requests and batch lines.
- `batches`: OpenAI's Batch API (``/v1/files``, ``/v1/batches``) with delays, partial failures,
  expiry, cancellation and per-batch limits.
- `server`: `create_app(config)` and `serve(config, host, port)`.
- `cli`: the one command line, one option per config field (``python -m services.teachers``, which
  ``magdi teachers serve`` forwards to).
- `runner`: `TeacherPanelServer`, the subprocess context manager used by tests, demo and benchmarks.

A part of its own (extra ``.[teachers]``, image ``services/teachers/Dockerfile``): it imports the
shared core (`magdi`) only, and the generator never imports it.
"""

from services.teachers.config import PanelSimConfig
from services.teachers.replay import RECORDED_MODELS

__all__ = ["RECORDED_MODELS", "PanelSimConfig"]
