"""MAGs for the distillation benchmarks: ReConcile debates of the SIMULATED panel on GSM8K, to a file.

    .venv/bin/python -m benchmarks.mags --questions 1319 --rounds 2 --out runs/mags/gsm8k-1319.jsonl

The debates go through the real generator engine over HTTP to the simulated teacher panel
(`services.teachers`: three of the four recorded GSM8K models, the ReConcile protocol
with its convincing samples), exactly as `magdi generate` runs them, but into memory instead of
Neo4j, and are written with the lossless jsonl export (`magdi.formats.jsonl`) that the trainer
reads (`data.source: jsonl:PATH`). The recorded solutions exist for the GSM8K *test* questions
only, so every split of these MAGs (train and held-out alike) comes from those 1,319 questions.
The GPU benchmark reads such a file: a GPU machine needs no Neo4j and no teacher server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from magdi.config_loading import read_yaml
from magdi.datasets import load_questions
from magdi.formats.jsonl import dump
from magdi.mag import Debate, DebateStatus, Question
from magdi.panel import PanelConfig, parse_panel, resolve_keys
from magdi.protocol import ProtocolConfig
from services.generator.client import Endpoints
from services.generator.engine import Engine
from services.generator.protocols import build_protocol, load_convincing
from services.generator.turn_writers import MemorySink
from services.teachers.config import PanelSimConfig
from services.teachers.runner import TeacherPanelServer

REPO = Path(__file__).resolve().parents[1]
GSM8K = REPO / "data" / "gsm8k"
CONVINCING = REPO / "data" / "convincing"
# the seats of configs/panels/simulated.yaml ({name, model, demos}); not its defaults (its rpm limit
# would pace the benchmark's generation)
SEATS: list[dict[str, str]] = read_yaml(REPO / "configs" / "panels" / "simulated.yaml", what="panel file")["agents"]
JOB = "job-bench-distill"


@dataclass(frozen=True)
class MagsRun:
    path: Path
    debates: int
    complete: int
    seconds: float


def gsm8k_questions(limit: int | None = None, offset: int = 0) -> list[Question]:
    """GSM8K test questions in file order (the ones the panel has recorded solutions for)."""
    return load_questions(GSM8K / "test.jsonl", "gsm8k", offset=offset, limit=limit)


def panel_config(base_url: str) -> PanelConfig:
    return parse_panel({"name": "simulated", "defaults": {"base_url": base_url, "api_key_env": None,
                                                          "timeout_s": 30, "limits": {"max_in_flight": 64}},
                        "agents": SEATS})


async def _run(panel: PanelConfig, protocol_cfg: ProtocolConfig, questions: list[Question],
               concurrency: int) -> list[Debate]:
    sink = MemorySink()
    endpoints = Endpoints(panel, resolve_keys(panel))
    protocol = build_protocol(protocol_cfg, {a.name: a.demos_key for a in panel.agents})
    try:
        await Engine(panel, protocol, endpoints, sink, job_id=JOB, concurrency=concurrency).run(questions)
    finally:
        await endpoints.aclose()
    order = {q.id: i for i, q in enumerate(questions)}
    return sorted(sink.debates.values(), key=lambda d: order.get(d.question.id, len(order)))


def generate_mags(questions: list[Question], out: Path, *, rounds: int = 2, seed: int = 0,
                  concurrency: int = 64) -> MagsRun:
    """Debate `questions` on the simulated panel (`rounds` discussion rounds) and write the MAGs to `out`."""
    sim = PanelSimConfig(solutions_path=GSM8K / "model_solutions.jsonl", questions_path=GSM8K / "test.jsonl",
                         models=[seat["model"] for seat in SEATS], seed=seed)
    demos = load_convincing(CONVINCING, "gsm8k", questions[0].task, [seat["demos"] for seat in SEATS])
    protocol_cfg = ProtocolConfig(max_rounds=rounds, demos=demos, demos_source=str(CONVINCING))
    start = time.monotonic()
    with TeacherPanelServer(sim) as server:
        debates = asyncio.run(_run(panel_config(server.base_url), protocol_cfg, questions, concurrency))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    dump(debates, tmp)
    tmp.replace(out)
    complete = sum(d.status is DebateStatus.COMPLETE for d in debates)
    return MagsRun(out, len(debates), complete, time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=1319, help="first N GSM8K test questions")
    parser.add_argument("--rounds", type=int, default=2, help="discussion rounds after round 0")
    parser.add_argument("--seed", type=int, default=0, help="the simulated panel's seed")
    parser.add_argument("--out", type=Path, required=True, help="jsonl file to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run = generate_mags(gsm8k_questions(args.questions), args.out, rounds=args.rounds, seed=args.seed)
    print(f"{run.debates} MAGs ({run.complete} complete) in {run.seconds:.1f} s -> {run.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
