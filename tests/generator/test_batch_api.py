"""services.generator.batch_api against the simulated panel's Batch API.

The main flow runs against a real panel subprocess; cases that need the panel's clock set far
apart (expiry, a batch that outlasts the poll timeout) run the same app in-process over
httpx.ASGITransport, which the async SDK drives unchanged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from repo_data import DATA_DIR

from magdi.panel import AgentConfig, Price
from services.generator.batch_api import (
    BatchLimits,
    BatchTimeout,
    ChatRequest,
    InputFile,
    PollPolicy,
    build_input_files,
    chat_request,
    collect,
    parse_line,
    submit,
    wait,
)
from services.teachers.config import PanelSimConfig
from services.teachers.replay import ReplayBank
from services.teachers.runner import TeacherPanelServer

DATA = DATA_DIR / "gsm8k"
BASE = {"solutions_path": DATA / "model_solutions.jsonl", "questions_path": DATA / "test.jsonl", "seed": 5}
FAST = PollPolicy(initial_s=0.05, factor=2.0, max_s=0.3, timeout_s=30.0)
MODELS = ("175b_verification", "175b_finetuning", "6b_verification")


def agent(model: str, **extra: Any) -> AgentConfig:
    return AgentConfig(name=model.replace("_", "-"), model=model, base_url="http://127.0.0.1:1/v1", max_tokens=2048,
                       **extra)


def prompt(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Q: {question}\nAnswer in JSON with reasoning, answer, confidence_level."}]


@pytest.fixture(scope="module")
def bank() -> ReplayBank:
    return ReplayBank.load(BASE["solutions_path"], BASE["questions_path"])


@pytest.fixture(scope="module")
def panel() -> Iterator[TeacherPanelServer]:
    config = PanelSimConfig(**BASE, batch_completion_s=0.3, aliases={"batchy": "6b_finetuning"},
                            per_model={"batchy": {"batch_error_rate": 0.4}})
    server = TeacherPanelServer(config)
    try:
        yield server.start()
    finally:
        server.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------- input files (no server)


def test_input_files_hold_one_model_each_and_respect_both_limits() -> None:
    requests = [ChatRequest(f"q{i}/{m}", {"model": m, "messages": [{"role": "user", "content": "x" * (10 + i)}]})
                for i in range(7) for m in ("a", "b")]
    by_count = build_input_files(requests, BatchLimits(max_requests=3))
    assert [(f.model, len(f.custom_ids)) for f in by_count] == [("a", 3), ("a", 3), ("a", 1), ("b", 3), ("b", 3),
                                                                  ("b", 1)]
    line = requests[0].line()
    assert json.loads(line) == {"custom_id": "q0/a", "method": "POST", "url": "/v1/chat/completions",
                                "body": requests[0].body}
    by_bytes = build_input_files(requests, BatchLimits(max_bytes=3 * len(line)))
    assert all(len(f.content) <= 3 * len(line) for f in by_bytes)
    assert [c for f in by_bytes for c in f.custom_ids] == [r.custom_id for r in requests if r.model == "a"] + [
        r.custom_id for r in requests if r.model == "b"]
    assert all(f.content.count(b"\n") == len(f.custom_ids) for f in by_bytes)
    with pytest.raises(ValueError, match="appears twice"):
        build_input_files([requests[0], requests[0]])
    with pytest.raises(ValueError, match="over the batch limit"):
        build_input_files(requests, BatchLimits(max_bytes=10))


def test_chat_request_is_the_body_the_synchronous_path_sends() -> None:
    req = chat_request("d/a/0", agent("m1", temperature=0.7), [{"role": "user", "content": "hi"}])
    assert req.body == {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2048,
                        "temperature": 0.7}
    assert "temperature" not in chat_request("d/a/0", agent("m1"), []).body


def test_output_lines_of_both_shapes_parse() -> None:
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {"choices": [
        {"message": {"content": "{}"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": -1}}},
        "error": None}
    parsed = parse_line(json.dumps(ok))
    assert parsed.ok and parsed.call_result(Price()).tokens_in is None  # negative usage is not trusted
    rejected = parse_line(json.dumps({"custom_id": "b", "response": {"status_code": 400, "body": {
        "error": {"message": "bad body"}}}, "error": None}))
    assert not rejected.ok and rejected.error == "HTTP 400: bad body"
    vllm = parse_line(json.dumps({"id": "x", "custom_id": "c", "response": None, "error": "model crashed"}))
    assert vllm.status_code is None and vllm.error == "model crashed"
    with pytest.raises(ValueError):
        parse_line('{"custom_id": "d", "response": {"status_code": 200, "bo')


# ---------------------------------------------------------------- against the panel subprocess


def test_a_round_for_three_models_comes_back_as_the_synchronous_calls_would(panel: TeacherPanelServer,
                                                                          bank: ReplayBank) -> None:
    requests = [chat_request(f"d{i}/{m}/0", agent(m), prompt(q.question))
                for i, q in enumerate(bank.questions[:8]) for m in MODELS]
    files = build_input_files(requests, BatchLimits(max_requests=5))
    assert len(files) == 6  # 8 requests per model, at most 5 per batch
    price = Price(input_per_1k=0.0005, output_per_1k=0.001)

    async def go() -> dict[str, Any]:
        async with openai.AsyncOpenAI(base_url=panel.base_url, api_key="sim", max_retries=2) as client:
            submitted = [await submit(client, f, key=f"job1/r0/p{n}") for n, f in enumerate(files)]
            polls: list[str] = []
            done = [await wait(client, s.batch_id, FAST, on_poll=lambda b: polls.append(b.status)) for s in submitted]
            assert polls[-1] == "completed"
            results = [await collect(client, b, s.custom_ids) for b, s in zip(done, submitted, strict=True)]
            again = await submit(client, files[0], key="job1/r0/p0")  # a resumed process finds it
            assert again.reused and again.batch_id == submitted[0].batch_id
            direct = {r.custom_id: (await client.chat.completions.create(**r.body)).choices[0].message.content
                      for r in requests}
            return {"results": {k: v for res in results for k, v in res.results.items()}, "direct": direct}

    out = run(go())
    assert set(out["results"]) == {r.custom_id for r in requests}
    for custom_id, result in out["results"].items():
        call = result.call_result(price)
        assert result.ok and call.text == out["direct"][custom_id] and call.finish_reason == "stop"
        assert call.tokens_in and call.tokens_out and call.cost_usd == pytest.approx(price.cost(call.tokens_in,
                                                                                                 call.tokens_out))
    stats = httpx.get(f"{panel.base_url}/_sim/stats").json()
    assert stats["batch_lines"] == len(requests)  # the reused key uploaded nothing new


def test_failed_lines_are_retried_in_new_batches_until_all_succeed(panel: TeacherPanelServer, bank: ReplayBank) -> None:
    pending = [chat_request(f"f{i}", agent("batchy"), prompt(q.question)) for i, q in enumerate(bank.questions[:20])]

    async def go() -> tuple[int, int]:
        first_failures, attempts = None, 0
        async with openai.AsyncOpenAI(base_url=panel.base_url, api_key="sim", max_retries=2) as client:
            left = list(pending)
            while left and attempts < 10:
                attempts += 1
                (file,) = build_input_files(left)
                sub = await submit(client, file, key=f"retry/{attempts}")
                res = await collect(client, await wait(client, sub.batch_id, FAST), sub.custom_ids)
                failed = {r.custom_id for r in res.failed}
                assert all(r.error.startswith("HTTP 500") for r in res.failed)  # type: ignore[union-attr]
                first_failures = len(failed) if first_failures is None else first_failures
                left = [r for r in left if r.custom_id in failed]
            assert not left
        return first_failures or 0, attempts

    first_failures, attempts = run(go())
    assert first_failures > 0 and attempts > 1


# ---------------------------------------------------------------- clock-driven cases, in-process


def test_expired_lines_and_a_failed_batch_come_back_as_failed_results(bank: ReplayBank) -> None:
    from services.teachers.server import create_app

    async def go() -> None:
        app = create_app(PanelSimConfig(**BASE, batch_completion_s=2.0, batch_expiry_s=0.9), bank=bank)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://panel")
        async with openai.AsyncOpenAI(base_url="http://panel/v1", api_key="sim", http_client=http) as client:
            requests = [chat_request(f"e{i}", agent(MODELS[0]), prompt(q.question))
                        for i, q in enumerate(bank.questions[:4])]  # due at 0.5, 1.0, 1.5, 2.0 s
            (file,) = build_input_files(requests)
            sub = await submit(client, file)
            batch = await wait(client, sub.batch_id, FAST)
            res = await collect(client, batch, sub.custom_ids)
            assert batch.status == "expired" and [r.custom_id for r in res.succeeded] == ["e0"]
            assert sorted(r.custom_id for r in res.failed) == ["e1", "e2", "e3"]
            assert all("batch_expired" in (r.error or "") for r in res.failed)
            with pytest.raises(BatchTimeout, match="in_progress"):
                slow = await submit(client, build_input_files(requests[:1])[0])
                await wait(client, slow.batch_id, PollPolicy(initial_s=0.05, max_s=0.05, timeout_s=0.2))
            bad = ChatRequest("x", {"model": MODELS[1], "messages": []})
            mixed = await submit(client, InputFile(MODELS[0], ("e0", "x"), requests[0].line() + bad.line()))
            failed = await wait(client, mixed.batch_id, FAST)
            res = await collect(client, failed, ["e0", "x"])
            assert failed.status == "failed" and {r.custom_id for r in res.failed} == {"e0", "x"}
            assert all(r.error and "status failed" in r.error for r in res.failed)

    run(go())
