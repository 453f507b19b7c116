"""A resumed batch is waited for at the endpoint it was sent to, also when a panel spans several."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from magdi.panel import parse_panel
from magdi.store.batches import BatchRecord
from services.generator.batch_api import PollPolicy, build_input_files, chat_request, submit
from services.generator.batching import BatchCalls, api_backends, route
from services.generator.client import Endpoints

FAST = PollPolicy(initial_s=0.05, factor=2.0, max_s=0.3, timeout_s=30.0)


def test_a_batch_left_open_on_one_of_two_endpoints_is_read_back_from_that_endpoint(
        start_panel, gsm8k: dict[str, Path]) -> None:  # noqa: ANN001
    first, second = start_panel(batch_completion_s=0.3), start_panel(batch_completion_s=0.3)
    panel = parse_panel({"defaults": {"api_key_env": None, "max_tokens": 512}, "agents": [
        {"name": "a", "model": "175b_verification", "base_url": first.base_url},
        {"name": "b", "model": "6b_verification", "base_url": second.base_url}]})
    question = json.loads(gsm8k["test"].read_text(encoding="utf-8").splitlines()[0])["question"]
    messages = [{"role": "user", "content": f"Q: {question}\nAnswer in JSON with reasoning, answer, confidence_level."}]
    seat = panel.agents[0]
    turn = "debate-1/a/0#a"

    async def scenario() -> str | None:
        endpoints = Endpoints(panel, {"a": "EMPTY", "b": "EMPTY"})
        try:
            # an earlier run sent this turn's batch to the first endpoint, recorded it, and died
            (file,) = build_input_files([chat_request(f"{turn}.1", seat, messages)])
            sent = await submit(endpoints.by_agent["a"].client, file, key="job-x/k1")
            endpoint, model = route(seat)
            record = BatchRecord(job_id="job-x", key="job-x/k1", kind="api", seq=0, model=model, endpoint=endpoint,
                                 batch_id=sent.batch_id, input_file_id=sent.input_file_id,
                                 custom_ids=[f"{turn}.1"], rounds=[0], status="submitted")
            calls = BatchCalls("job-x", api_backends(panel, endpoints, FAST, "job-x"))
            await calls.resume([record], complete_debates=[])
            calls.activity.enter()  # what the engine does for a debate in flight: its turn then waits alone
            try:
                result = await asyncio.wait_for(calls.complete(seat, messages, turn), 60)
            finally:
                await calls.aclose()
            return result.text
        finally:
            await endpoints.aclose()

    text = asyncio.run(scenario())
    assert text and "answer" in text, text
    assert first.stats()["completions"] == 1, "answered by the batch sent before, not sent again"
    assert second.stats()["completions"] == 0
