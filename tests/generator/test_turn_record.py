"""What a turn leaves in the graph (issue 10, item 4): every raw output, in call order, and the prompt
exactly as sent, in the store, the API's debate JSON and the lossless jsonl export.

A real job against the simulated panel with malformed replies turned up, so that turns are
re-asked; the first reply of a re-asked turn used to be lost (only the re-ask's was kept).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from fastapi.testclient import TestClient
from generator_helpers import panel_dict
from test_engine_faults import check_outputs

from magdi.answers import AnswerParseError
from magdi.formats import jsonl
from magdi.formats.exports import exporter
from magdi.mag import JobStatus, TaskType, canonical
from magdi.panel import parse_panel
from magdi.settings import Neo4jSettings
from magdi.store.graph_store import DebateFilter, GraphStore
from magdi.store.jobs import JobStore
from services.generator.client import prompt_hash
from services.generator.jobrun import new_worker_id, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import ProtocolConfig, build_protocol, load_convincing, parse_turn

TOKEN = "turn-record-token-0123456789"


def test_reasked_turns_keep_every_output_and_the_prompt_as_sent(store: GraphStore, start_panel,  # noqa: ANN001
                                                                 gsm8k: dict[str, Path],
                                                                 neo4j_server: Neo4jSettings, tmp_path: Path) -> None:
    panel_srv = start_panel(latency_s=0.01, malformed_rate=0.35, seed=3)
    panel = parse_panel(panel_dict(panel_srv.base_url))
    demos = load_convincing(gsm8k["convincing"], "gsm8k", TaskType.NUMBER, [a.demos_key for a in panel.agents])
    protocol_cfg = ProtocolConfig(max_rounds=2, demos=demos)
    spec = build_spec(name="turns", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=40, limit=6, panel=panel, protocol=protocol_cfg)
    jobs, worker = JobStore(store), new_worker_id()
    from services.generator.settings import GeneratorSettings

    settings = GeneratorSettings(concurrency=6, lease_s=30)
    claimed_at = time.monotonic()
    jobs.create(spec, total=6, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=claimed_at))
    assert result.status is JobStatus.COMPLETE, result.errors

    protocol = build_protocol(protocol_cfg, {a.name: a.demos_key for a in panel.agents})
    debates = [store.get_debate(i) for i in store.debate_ids(DebateFilter(job_id=spec.id))]
    reasked = []
    for d in debates:
        for r in d.responses:
            before = d.model_copy(update={"responses": [x for x in d.responses if x.round < r.round], "edges": []})
            req = next(t for t in protocol.turns(before, r.round) if t.agent == r.agent)
            assert [m.model_dump() for m in r.prompt] == req.messages and prompt_hash(req.messages) == r.prompt_hash
            check_outputs(r, d.question)
            if len(r.outputs) == 2:
                reasked.append((d, r))
    assert reasked, "malformed replies were re-asked"
    d, r = reasked[0]
    first = r.outputs[0]
    try:
        parse_turn(first.text or "", d.question)
        raise AssertionError("the first output should be the unparseable one")
    except AnswerParseError:
        pass
    assert r.outputs[1].text == r.raw_text and first.text != r.raw_text
    assert first.finish_reason and first.latency_s is not None and first.attempts >= 1

    # the few-shot demos are stored once, however many prompts repeat them
    messages = sum(len(x.prompt or []) for dd in debates for x in dd.responses)
    parts = store.rows("MATCH (p:PromptPart) RETURN count(p) AS n")[0]["n"]
    assert 0 < parts < messages / 3, (parts, messages)

    # the API's debate JSON: nodes[].outputs (first call first) and nodes[].prompt ({role, content})
    from services.api.main import create_app
    from services.api.settings import ApiSettings

    with TestClient(create_app(ApiSettings(token=TOKEN, neo4j=neo4j_server)), base_url="http://localhost") as client:
        body = client.get(f"/v1/debates/{d.id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    node = next(n for n in body["nodes"] if n["agent"] == r.agent and n["round"] == r.round)
    assert [o["text"] for o in node["outputs"]] == [first.text, r.raw_text]
    assert node["outputs"][1]["reask"] == r.outputs[1].reask
    assert node["prompt"] == [m.model_dump() for m in r.prompt] and node["prompt"][-1]["role"] == "user"

    # the lossless jsonl keeps both, and reads back to the same MAG
    [record] = list(exporter("jsonl")([d]))
    line = json.dumps(record)
    back = jsonl.from_line(line, where="line 1")
    assert canonical(back) == canonical(d)
    stored = next(x for x in record["responses"] if x["agent"] == r.agent and x["round"] == r.round)
    assert len(stored["outputs"]) == 2 and stored["prompt"] == node["prompt"]
