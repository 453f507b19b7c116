"""The simulated panel's Batch API, through the real `openai` SDK (`client.files`, `client.batches`).

The round trip runs against a real subprocess; the clock-driven cases (expiry, cancel) against the
same app in-process (Starlette's TestClient is an httpx.Client, so the SDK drives it unchanged).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from repo_data import DATA_DIR

from services.teachers.config import PanelSimConfig
from services.teachers.replay import ReplayBank
from services.teachers.runner import TeacherPanelServer

DATA = DATA_DIR / "gsm8k"
BASE = {"solutions_path": DATA / "model_solutions.jsonl", "questions_path": DATA / "test.jsonl", "seed": 3}
SCHEMA = 'Output your answer in json format, with the format as follows: {"reasoning": "", "answer": "", "confidence_level": ""}.'  # noqa: E501


@pytest.fixture(scope="module")
def bank() -> ReplayBank:
    return ReplayBank.load(BASE["solutions_path"], BASE["questions_path"])


def chat_body(model: str, question: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"Q: {question}\n{SCHEMA}"}], "max_tokens": 2048}


def input_file(lines: list[tuple[str, dict[str, Any]]], url: str = "/v1/chat/completions") -> bytes:
    return "".join(json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body}) + "\n"
                   for cid, body in lines).encode()


def submit(client: openai.OpenAI, content: bytes, **kwargs: Any) -> Any:  # -> openai.types.Batch
    uploaded = client.files.create(file=("round.jsonl", content), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", **kwargs)


def wait(client: openai.OpenAI, batch_id: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}"
        time.sleep(0.1)
    return batch


def read_lines(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    lines = [json.loads(x) for x in client.files.content(file_id).text.splitlines()]
    return {line["custom_id"]: line for line in lines}


@pytest.fixture(scope="module")
def panel() -> Iterator[TeacherPanelServer]:
    config = PanelSimConfig(**BASE, batch_completion_s=0.5, batch_max_requests=40,
                            aliases={"batchy": "6b_finetuning"}, per_model={"batchy": {"batch_error_rate": 0.5}})
    server = TeacherPanelServer(config)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def client(panel: TeacherPanelServer) -> Iterator[openai.OpenAI]:
    httpx.post(f"{panel.base_url}/_sim/reset")
    with openai.OpenAI(base_url=panel.base_url, api_key="sim", max_retries=0, timeout=10) as c:
        yield c


def test_a_batch_is_answered_line_for_line_as_direct_requests_are(client: openai.OpenAI, bank: ReplayBank,
                                                                  panel: TeacherPanelServer) -> None:
    requests = [(f"q{i}/agent0/round0", chat_body("175b_verification", q.question))
                for i, q in enumerate(bank.questions[:12])]
    content = input_file(requests)
    uploaded = client.files.create(file=("round0.jsonl", content), purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.bytes, uploaded.status) == ("file", "batch", len(content),
                                                                                     "processed")
    assert client.files.retrieve(uploaded.id).filename == "round0.jsonl"
    assert client.files.content(uploaded.id).content == content
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"job": "j1", "round": "0"})
    assert created.status == "validating" and created.metadata == {"job": "j1", "round": "0"}
    assert created.expires_at is not None and created.expires_at - created.created_at == 86400
    done = wait(client, created.id)
    assert done.status == "completed" and done.error_file_id is None and done.model == "175b_verification"
    assert done.request_counts is not None and (done.request_counts.total, done.request_counts.completed) == (12, 12)
    assert done.usage is not None and done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert done.in_progress_at is not None and done.completed_at is not None
    out = read_lines(client, done.output_file_id)
    assert set(out) == {cid for cid, _ in requests}
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"  # type: ignore[arg-type]
    for cid, body in requests:  # the same replay as /v1/chat/completions
        line = out[cid]
        assert line["error"] is None and line["response"]["status_code"] == 200
        direct = client.chat.completions.create(**body)
        assert line["response"]["body"]["choices"][0]["message"]["content"] == direct.choices[0].message.content
    stats = httpx.get(f"{panel.base_url}/_sim/stats").json()
    assert stats["batch_lines"] == 12 and stats["completions"] == 24 and stats["max_completions_per_prompt"] == 2


def test_partial_failures_land_in_the_error_file_and_a_retry_of_them_succeeds(client: openai.OpenAI,
                                                                               bank: ReplayBank) -> None:
    requests = [(f"r{i}", chat_body("batchy", q.question)) for i, q in enumerate(bank.questions[20:50])]
    done = wait(client, submit(client, input_file(requests)).id)
    out, err = read_lines(client, done.output_file_id), read_lines(client, done.error_file_id)
    assert done.status == "completed" and out and err and set(out) | set(err) == {c for c, _ in requests}
    assert not set(out) & set(err)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (len(out), len(err))
    assert all(line["response"]["status_code"] == 500 and line["response"]["body"]["error"]["type"] == "server_error"
               for line in err.values())
    # a failed line's next attempt is a new seeded draw: resubmitted, most of them now succeed
    again = wait(client, submit(client, input_file([(c, b) for c, b in requests if c in err])).id)
    assert len(read_lines(client, again.output_file_id)) >= len(err) // 4


def test_a_bad_input_file_fails_validation_naming_the_line(client: openai.OpenAI, bank: ReplayBank) -> None:
    a, b = chat_body("6b_verification", bank.questions[0].question), chat_body("6b_finetuning", bank.questions[1].question)
    content = input_file([("x", a), ("x", a), ("y", b)]) + b"not json\n"
    failed = wait(client, submit(client, content).id)
    assert failed.status == "failed" and failed.errors is not None and failed.failed_at is not None
    assert [(e.code, e.line) for e in failed.errors.data or []] == [
        ("duplicate_custom_id", 2), ("model_mismatch", 3), ("invalid_json_line", 4)]
    too_many = wait(client, submit(client, input_file([(f"n{i}", a) for i in range(41)])).id)
    assert too_many.status == "failed" and too_many.errors.data[0].code == "too_many_tasks"  # type: ignore[union-attr]
    wrong_url = wait(client, submit(client, input_file([("u", a)], url="/v1/embeddings")).id)
    assert wrong_url.errors.data[0].code == "url_mismatch"  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        client.files.create(file=("round.txt", b"{}"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h")
    not_batch = client.files.create(file=("notes.jsonl", input_file([("z", a)])), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.batches.create(input_file_id=not_batch.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_a_bad_line_body_is_a_400_line_not_a_failed_batch(client: openai.OpenAI, bank: ReplayBank) -> None:
    good = chat_body("6b_verification", bank.questions[2].question)
    done = wait(client, submit(client, input_file([("ok", good), ("bad", {"model": "6b_verification"})])).id)
    assert done.status == "completed"
    assert read_lines(client, done.error_file_id)["bad"]["response"]["status_code"] == 400
    assert read_lines(client, done.output_file_id)["ok"]["response"]["status_code"] == 200


def test_list_pages_newest_first(client: openai.OpenAI, bank: ReplayBank) -> None:
    body = chat_body("6b_verification", bank.questions[3].question)
    ids = [submit(client, input_file([("one", body)])).id for _ in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    listed = [b.id for b in client.batches.list(limit=2)]  # auto-paging follows `after`
    assert listed[:3] == ids[::-1] and len(listed) == len(set(listed))


# ---------------------------------------------------------------- clock-driven cases, in-process


@pytest.fixture
def in_process(bank: ReplayBank) -> Iterator[Any]:
    """in_process(**knobs) -> an SDK client on a fresh in-process panel."""
    from starlette.testclient import TestClient

    from services.teachers.server import create_app

    opened: list[TestClient] = []

    def make(**knobs: Any) -> openai.OpenAI:
        tc = TestClient(create_app(PanelSimConfig(**BASE, **knobs), bank=bank))
        opened.append(tc.__enter__())
        return openai.OpenAI(base_url="http://testserver/v1", api_key="sim", http_client=tc, max_retries=0)

    yield make
    for tc in opened:
        tc.__exit__(None, None, None)


def test_an_expired_batch_keeps_the_lines_answered_in_time(in_process: Any, bank: ReplayBank) -> None:
    client = in_process(batch_completion_s=4.0, batch_expiry_s=1.7)  # 8 lines due every 0.5 s; 3 in time
    requests = [(f"e{i}", chat_body("175b_finetuning", q.question)) for i, q in enumerate(bank.questions[:8])]
    batch = submit(client, input_file(requests))
    assert client.batches.retrieve(batch.id).status == "in_progress"
    done = wait(client, batch.id)
    assert done.status == "expired" and done.expired_at is not None
    out, err = read_lines(client, done.output_file_id), read_lines(client, done.error_file_id)
    assert sorted(out) == ["e0", "e1", "e2"]
    assert sorted(err) == [f"e{i}" for i in range(3, 8)]
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in err.values())


def test_cancel_stops_a_batch_and_lists_its_unanswered_lines(in_process: Any, bank: ReplayBank) -> None:
    client = in_process(batch_completion_s=60.0, batch_cancel_s=0.2)
    requests = [(f"c{i}", chat_body("175b_finetuning", q.question)) for i, q in enumerate(bank.questions[:5])]
    batch = submit(client, input_file(requests))
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done = wait(client, batch.id)
    assert done.status == "cancelled" and done.output_file_id is None
    err = read_lines(client, done.error_file_id)
    assert sorted(err) == sorted(c for c, _ in requests)
    assert {line["error"]["code"] for line in err.values()} == {"batch_cancelled"}
    fast = in_process(batch_completion_s=0.0)
    finished = wait(fast, submit(fast, input_file(requests[:1])).id)
    with pytest.raises(openai.ConflictError):
        fast.batches.cancel(finished.id)
