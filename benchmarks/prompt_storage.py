"""Bytes per MAG for the prompts each agent was shown: ours vs storing them the plain ways.

    .venv/bin/python benchmarks/prompt_storage.py              # 60 ReConcile debates with demos, ~1 minute
    .venv/bin/python benchmarks/prompt_storage.py --debates 200

Runs real ReConcile debates (three recorded GSM8K models behind the SIMULATED teacher panel, the
convincing samples of data/convincing as few-shot demos, up to 3 discussion rounds) through
`services.generator.engine.Engine` into memory, then counts the bytes each layout stores for the
prompts of those debates (UTF-8 of every string property, the way Neo4j holds them):

- inline: each Response keeps its prompt as a JSON string (what one writes without thinking);
- per debate: each debate keeps its distinct messages once, each Response a list of indexes;
- ours (`magdi.store.records`): every distinct message is one `PromptPart {id, role, content}`
  shared by the whole store; each Response lists its parts' ids. Demos are stored once for all
  debates, a round's discussion message once for all agents of that round.

All three reproduce every prompt exactly (checked below for ours).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path

from magdi.datasets import load_questions
from magdi.mag import Message, TaskType
from magdi.panel import parse_panel, resolve_keys
from magdi.store import records
from services.generator.client import Endpoints
from services.generator.engine import Engine
from services.generator.protocols import ProtocolConfig, build_protocol, load_convincing
from services.generator.turn_writers import MemorySink
from services.teachers.config import PanelSimConfig
from services.teachers.runner import TeacherPanelServer

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
AGENTS = (("chatgpt", "175b_verification"), ("claude", "175b_finetuning"), ("bard", "6b_verification"))


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debates", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    questions = load_questions(DATA / "gsm8k" / "test.jsonl", "gsm8k", limit=args.debates)
    sim = PanelSimConfig(solutions_path=DATA / "gsm8k" / "model_solutions.jsonl",
                         questions_path=DATA / "gsm8k" / "test.jsonl", models=[m for _, m in AGENTS])
    demos = load_convincing(DATA / "convincing", "gsm8k", TaskType.NUMBER, [n for n, _ in AGENTS])
    protocol_cfg = ProtocolConfig(max_rounds=3, demos=demos)
    sink = MemorySink()
    start = time.monotonic()
    with TeacherPanelServer(sim) as server:
        panel = parse_panel({"name": "bench", "defaults": {"base_url": server.base_url, "max_tokens": 2048},
                             "agents": [{"name": n, "model": m, "demos": n} for n, m in AGENTS]})
        endpoints = Endpoints(panel, resolve_keys(panel))
        protocol = build_protocol(protocol_cfg, {a.name: a.demos_key for a in panel.agents})
        engine = Engine(panel, protocol, endpoints, sink, job_id="job-prompt-storage", concurrency=16)

        async def run() -> None:
            await engine.run(questions)
            await endpoints.aclose()

        asyncio.run(run())
    debates = list(sink.debates.values())
    responses = [r for d in debates for r in d.responses if r.prompt is not None]

    inline = sum(utf8(json.dumps([m.model_dump() for m in r.prompt], ensure_ascii=False)) for r in responses)
    per_debate = 0
    for d in debates:
        distinct = {(m.role, m.content) for r in d.responses for m in r.prompt or []}
        per_debate += sum(utf8(role) + utf8(content) for role, content in distinct)
        per_debate += sum(4 * len(r.prompt or []) for r in d.responses)  # an int64-free index list: ~4 B each
    parts: dict[str, dict[str, str]] = {}
    refs = 0
    for r in responses:
        rows = records.prompt_parts(r)
        refs += sum(utf8(p["id"]) for p in rows)
        parts.update({p["id"]: p for p in rows})
        rebuilt = [Message(role=parts[p["id"]]["role"], content=parts[p["id"]]["content"]) for p in rows]
        assert rebuilt == r.prompt, "the parts reproduce the prompt exactly"
    shared = sum(utf8(p["id"]) + utf8(p["role"]) + utf8(p["content"]) for p in parts.values())
    ours = refs + shared
    n = len(debates)
    messages = sum(len(r.prompt or []) for r in responses)
    print(f"{n} ReConcile debates with demos ({len(responses)} turns, {messages} prompt messages, "
          f"{len(parts)} distinct) in {time.monotonic() - start:.0f} s")
    print(f"{'layout':<34} {'bytes/MAG':>10} {'vs inline':>10}")
    for name, total in (("inline JSON per Response", inline), ("distinct messages per debate", per_debate),
                        ("ours: shared PromptPart + id lists", ours)):
        print(f"{name:<34} {total / n:>10,.0f} {total / inline:>10.3f}")
    print(f"ours, split: id lists on the Responses {refs / n:,.0f} B/MAG; PromptPart nodes {shared / n:,.0f} B/MAG "
          f"(demos stored once for the run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
