"""Tests of the SIMULATED teacher panel, through the real `openai` SDK against a real subprocess.

Subprocess servers are few (they take seconds to import FastAPI on a loaded machine) and are
started together; faults that need no socket are checked in-process with Starlette's TestClient.
Every subprocess is stopped by pid in a `finally`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from repo_data import DATA_DIR

from services.teachers.config import PanelSimConfig
from services.teachers.policy import DiscussionPolicy, parse_debate
from services.teachers.replay import ReplayBank, normalize_number, split_final_answer
from services.teachers.runner import TeacherPanelServer

DATA = DATA_DIR / "gsm8k"
SOLUTIONS, QUESTIONS = DATA / "model_solutions.jsonl", DATA / "test.jsonl"

SCHEMA = 'Output your answer in json format, with the format as follows: {"reasoning": "", "answer": "", "confidence_level": ""}. Please strictly output in JSON format.'  # noqa: E501
DEMO = "Q: Tom has 2 apples and buys 3 more. How many apples does he have?\nA:{'reasoning': '2 + 3 = 5', 'answer': '5'}"  # noqa: E501


def round0_prompt(question: str) -> str:
    return "\n".join(
        [
            DEMO,
            f"Q: {question}",
            "Please answer the question with step-by-step reasoning.",
            "Also, evaluate your confidence level (between 0.0 and 1.0).",
            SCHEMA,
            'Only place a single numeric value in the "answer" field.',
        ]
    )


def debate_prompt(question: str, groups: list[tuple[str, list[tuple[str, float]]]]) -> str:
    """ReConcile's discussion prompt; groups = [(answer, [(reasoning, confidence), ...]), ...]."""
    block = ""
    for answer, members in groups:
        block += f"There are {len(members)} agents think the answer is {answer}. "
        block += (
            "\n".join(
                f"One agent solution: I think the answer is {answer} because {r} My confidence level is {c}."
                for r, c in members
            )
            + "\n\n"
        )
    return (
        round0_prompt(question) + " Carefully review the following solutions from other agents as additional "
        "information, and provide your own answer and step-by-step reasoning to the question. Clearly state "
        "which point of view you agree or disagree with and why.\n\n" + block + SCHEMA
    )


def ask(client: openai.OpenAI, model: str, prompt: str) -> dict[str, object]:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    content = reply.choices[0].message.content
    assert content is not None
    return json.loads(content)


@pytest.fixture(scope="module")
def bank() -> ReplayBank:
    return ReplayBank.load(SOLUTIONS, QUESTIONS)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, TeacherPanelServer]]:
    """One panel for all SDK tests: faulty teachers are aliases with per_model knobs, because each
    extra subprocess costs seconds of FastAPI imports."""
    base = {"solutions_path": SOLUTIONS, "questions_path": QUESTIONS, "seed": 7}
    main = PanelSimConfig(
        **base,
        aliases={
            "gpt-4": "175b_verification",
            "broken": "6b_finetuning",
            "limited": "6b_finetuning",
            "garbled": "175b_finetuning",
            "flaky": "175b_verification",
        },
        down_models=["broken"],
        per_model={
            "limited": {"rpm_limit": 2, "error_rate": 1.0},
            "garbled": {"malformed_rate": 1.0},
            "flaky": {"error_rate": 0.3},
        },
    )
    panel = TeacherPanelServer(main)
    try:
        yield {"main": panel.start()}
    finally:
        panel.stop()
        if panel._proc is not None:
            assert panel._proc.poll() is not None, f"panel pid {panel.pid} still running"


@pytest.fixture()
def client(servers: dict[str, TeacherPanelServer]) -> Iterator[openai.OpenAI]:
    httpx.post(f"{servers['main'].base_url}/_sim/reset")
    with openai.OpenAI(base_url=servers["main"].base_url, api_key="sim", max_retries=0, timeout=10) as c:
        yield c


# ---------------------------------------------------------------- pure units (no data needed)


def test_number_extraction() -> None:
    assert normalize_number("$1,000.50") == "1000.5"
    assert normalize_number("1/5") == "0.2"
    assert normalize_number("-1.8 billion") == "-1.8"
    assert normalize_number("18.0") == "18"
    assert normalize_number("none") == ""
    assert split_final_answer("a\nb = 3\nA: 3") == ("a\nb = 3", "3")
    assert split_final_answer("cut off in the midd")[1] == ""


def test_parse_debate_contract() -> None:
    text = (
        "There are 2 agents think the answer is 18. One agent solution: I think the answer is $18 because "
        "16 - 7 = 9. 9 * 2 = 18. My confidence level is 0.9.\nOne agent solution: I think the answer is 18.0 "
        "because ... My confidence level is 85%.\n\nThere are 1 agents think the answer is 26. "
        "One agent solution: I think the answer is 26 because 13 * 2 = 26. My confidence level is 0.6."
    )
    entries = parse_debate(text)
    assert [(e.answer, e.confidence) for e in entries] == [("18", 0.9), ("18", 0.85), ("26", 0.6)]
    fragments = (
        'Agent A said {"reasoning": "x", "answer": "7", "confidence_level": "0.8"} and '
        "{'answer': '9', 'confidence_level': 0.7}; schema " + SCHEMA
    )
    assert [(e.answer, e.confidence) for e in parse_debate(fragments)] == [("7", 0.8), ("9", 0.7)]
    assert parse_debate(DEMO + "\n" + SCHEMA) == []  # demos and the empty schema are not debate entries


def test_policy_switch_probability_is_monotone() -> None:
    policy = DiscussionPolicy(seed=0)
    assert policy.p_switch(1.9, 0.6) > 0.95 > policy.p_switch(0.9, 0.9) > policy.p_switch(0.6, 0.9)
    assert 0.6 <= policy.confidence(0, "m", 1) <= 0.65 and policy.confidence(3, "m", 1) <= 0.99


# ---------------------------------------------------------------- replay bank


def test_bank_finds_question_after_demos(bank: ReplayBank) -> None:
    q = bank.questions[5]
    assert bank.find(round0_prompt(q.question.replace(" ", "  \n"))) is q
    assert bank.find("What is the airspeed of an unladen swallow?") is None
    answers_agree = all(
        (s.answer == q.gold) == s.is_correct for q in bank.questions for s in q.solutions.values()
    )
    assert answers_agree, "local answer extraction disagrees with the recorded is_correct labels"


# ---------------------------------------------------------------- through the SDK, real sockets


def test_round0_replays_recorded_solution(
    client: openai.OpenAI, bank: ReplayBank, servers: dict[str, TeacherPanelServer]
) -> None:
    q = bank.questions[0]
    for model, sol in q.solutions.items():
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": round0_prompt(q.question)}], temperature=0.7
        )
        assert raw.headers["x-magdi-simulated"] == "true"
        reply = raw.parse()
        assert reply.system_fingerprint == "magdi-simulated-teacher"
        assert reply.choices[0].finish_reason == "stop"
        body = json.loads(reply.choices[0].message.content or "")
        assert body["answer"] == sol.answer and body["reasoning"] == sol.reasoning
        n_agree = len(q.agreeing_models(sol.answer, exclude=model))
        assert 0.6 + 0.1 * n_agree <= body["confidence_level"] <= min(0.65 + 0.1 * n_agree, 0.99)
        usage = reply.usage
        assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert (
        ask(client, "gpt-4", round0_prompt(q.question))["answer"] == q.solutions["175b_verification"].answer
    )


def test_determinism_and_stats(
    client: openai.OpenAI, bank: ReplayBank, servers: dict[str, TeacherPanelServer]
) -> None:
    stats_url = f"{servers['main'].base_url}/_sim/stats"
    prompts = [round0_prompt(q.question) for q in bank.questions[10:13]]
    first = [
        client.chat.completions.create(model="6b_verification", messages=[{"role": "user", "content": p}])
        for p in prompts
    ]
    stats = httpx.get(stats_url).json()
    assert stats["completions"] == 3 and stats["max_completions_per_prompt"] == 1
    assert stats["by_model"] == {"6b_verification": 3}
    again = client.chat.completions.create(
        model="6b_verification", messages=[{"role": "user", "content": prompts[0]}]
    )
    assert again.choices[0].message.content == first[0].choices[0].message.content
    stats = httpx.get(stats_url).json()
    assert stats["max_completions_per_prompt"] == 2 and stats["repeated_prompts"] == 1
    httpx.post(f"{servers['main'].base_url}/_sim/reset")
    assert httpx.get(stats_url).json()["completions"] == 0


def test_errors_are_openai_shaped(
    client: openai.OpenAI, bank: ReplayBank, servers: dict[str, TeacherPanelServer]
) -> None:
    prompt = round0_prompt(bank.questions[0].question)
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": prompt}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": prompt}])
    assert down.value.status_code == 503
    bad = httpx.post(f"{servers['main'].base_url}/chat/completions", json={"model": "6b_finetuning"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    unknown = ask(client, "6b_finetuning", "Q: What is the airspeed of an unladen swallow?\n" + SCHEMA)
    assert unknown["answer"] == "unknown" and float(str(unknown["confidence_level"])) <= 0.1


def test_server_errors_then_rate_limit(
    client: openai.OpenAI, bank: ReplayBank, servers: dict[str, TeacherPanelServer]
) -> None:
    messages = [{"role": "user", "content": round0_prompt(bank.questions[1].question)}]
    for _ in range(2):  # "limited": rpm_limit=2 and error_rate=1
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="limited", messages=messages)  # type: ignore[arg-type]
        assert err.value.status_code in (500, 502, 503)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="limited", messages=messages)  # type: ignore[arg-type]
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]
    assert ask(client, "6b_finetuning", messages[0]["content"])[
        "answer"
    ]  # same recorded model, other name: fine
    stats = httpx.get(f"{servers['main'].base_url}/_sim/stats").json()
    assert stats["completions"] == 1 and stats["faults"] == {"server_error": 2, "rate_limited": 1}


def test_async_client_retries_until_each_prompt_completes_once(
    client: openai.OpenAI, bank: ReplayBank, servers: dict[str, TeacherPanelServer]
) -> None:
    """The generator's path: AsyncOpenAI with SDK retries against a teacher failing 30% of calls."""

    async def run() -> list[str | None]:
        async with openai.AsyncOpenAI(base_url=servers["main"].base_url, api_key="sim", max_retries=6) as ac:
            calls = [
                ac.chat.completions.create(
                    model="flaky", messages=[{"role": "user", "content": round0_prompt(q.question)}]
                )
                for q in bank.questions[20:40]
            ]
            return [r.choices[0].message.content for r in await asyncio.gather(*calls)]

    contents = asyncio.run(run())
    assert all(json.loads(c or "")["answer"] is not None for c in contents)
    stats = httpx.get(f"{servers['main'].base_url}/_sim/stats").json()
    assert stats["completions"] == 20 and stats["max_completions_per_prompt"] == 1
    assert stats["faults"]["server_error"] >= 1  # some calls did fail and were retried


def test_malformed_content(
    client: openai.OpenAI, bank: ReplayBank, servers: dict[str, TeacherPanelServer]
) -> None:
    for q in bank.questions[:6]:  # "garbled": malformed_rate=1
        reply = client.chat.completions.create(
            model="garbled", messages=[{"role": "user", "content": round0_prompt(q.question)}]
        )
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.choices[0].message.content or "")
    stats = httpx.get(f"{servers['main'].base_url}/_sim/stats").json()
    assert stats["completions"] == 0 and stats["faults"] == {"malformed": 6}


def test_weak_agent_switches_to_strong_majority(client: openai.OpenAI, bank: ReplayBank) -> None:
    q = bank.questions[0]  # 6b_finetuning said 26; 175b_verification said 18 (gold)
    own, other = q.solutions["6b_finetuning"], q.solutions["175b_verification"]
    prompt = debate_prompt(
        q.question,
        [
            (other.answer, [(other.reasoning, 0.95), (other.reasoning, 0.95)]),
            (own.answer, [(own.reasoning, 0.6)]),
        ],
    )
    first = ask(client, "6b_finetuning", prompt)
    assert first == ask(client, "6b_finetuning", prompt)
    assert first["answer"] == "18"
    assert str(first["reasoning"]).startswith("I agree with") and other.reasoning in str(first["reasoning"])
    templated = ask(
        client,
        "6b_finetuning",
        debate_prompt(
            q.question, [("12345", [("x", 0.99), ("y", 0.99)]), (own.answer, [(own.reasoning, 0.6)])]
        ),
    )
    assert templated["answer"] == "12345" and "Simulated reasoning" in str(templated["reasoning"])
    kept = ask(client, "6b_finetuning", round0_prompt(q.question) + "\nOne agent solution: unreadable.")
    assert kept["answer"] == own.answer  # a block that cannot be parsed: keep own answer


def test_switching_tracks_support(client: openai.OpenAI, bank: ReplayBank) -> None:
    """Across 50 questions, strong support for another answer flips the agent far more often."""
    model = "6b_finetuning"
    picked = []
    for q in bank.questions:
        own = q.solutions[model]
        rival = next((s for s in q.solutions.values() if s.answer and s.answer != own.answer), None)
        if own.answer and rival is not None:
            picked.append((q, own, rival))
        if len(picked) == 50:
            break
    strong = weak = 0
    for q, own, rival in picked:
        hi = debate_prompt(
            q.question,
            [
                (rival.answer, [(rival.reasoning, 0.95), (rival.reasoning, 0.95)]),
                (own.answer, [(own.reasoning, 0.6)]),
            ],
        )
        lo = debate_prompt(
            q.question, [(own.answer, [(own.reasoning, 0.9)]), (rival.answer, [(rival.reasoning, 0.6)])]
        )
        strong += ask(client, model, hi)["answer"] == rival.answer
        weak += ask(client, model, lo)["answer"] == rival.answer
    assert strong >= 40 and weak <= 15 and strong - weak >= 25, (strong, weak)


# ---------------------------------------------------------------- in-process fault checks


def test_in_process_faults(bank: ReplayBank) -> None:
    from starlette.testclient import TestClient

    from services.teachers.server import create_app

    base = {"solutions_path": SOLUTIONS, "questions_path": QUESTIONS}
    body = {
        "model": "6b_finetuning",
        "messages": [{"role": "user", "content": round0_prompt(bank.questions[2].question)}],
    }

    def post(cfg: PanelSimConfig, payload: dict[str, object] = body) -> httpx.Response:
        with TestClient(create_app(cfg, bank=bank)) as tc:
            return tc.post("/v1/chat/completions", json=payload)

    no_header = PanelSimConfig(**base, rpm_limit=1, retry_after_header=False)
    with TestClient(create_app(no_header, bank=bank)) as tc:
        assert tc.post("/v1/chat/completions", json=body).status_code == 200
        limited = tc.post("/v1/chat/completions", json=body)
        assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert post(PanelSimConfig(**base, empty_rate=1)).json()["choices"][0]["message"]["content"] == ""
    usage = post(PanelSimConfig(**base, wrong_usage_rate=1)).json().get("usage")
    assert usage is None or usage["total_tokens"] < 0
    truncated = post(PanelSimConfig(**base, truncated_body_rate=1))
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)
    hung = post(PanelSimConfig(**base, timeout_rate=1, hang_s=0.2))
    assert hung.status_code == 200  # the client waited long enough, so it gets the answer
    cut = post(PanelSimConfig(**base), {**body, "max_tokens": 5}).json()["choices"][0]
    assert cut["finish_reason"] == "length"
    assert post(PanelSimConfig(**base), {**body, "stream": True}).status_code == 400


_STUBBORN_CHILD = r"""
import http.server, signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # forces the runner to escalate to SIGKILL
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{"object": "list", "data": []}')
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


class _StubbornPanel(TeacherPanelServer):
    def command(self, config_path: Path) -> list[str]:
        return [sys.executable, "-c", _STUBBORN_CHILD, str(self.port)]


def test_runner_stops_by_pid_on_failure(tmp_path: Path) -> None:
    cfg = PanelSimConfig(solutions_path=tmp_path / "s.jsonl", questions_path=tmp_path / "q.jsonl")
    panel = _StubbornPanel(cfg, grace_s=0.5)
    with pytest.raises(RuntimeError, match="boom"), panel:
        assert panel.base_url.endswith("/v1") and httpx.get(f"{panel.base_url}/models").status_code == 200
        raise RuntimeError("boom")
    with pytest.raises(ProcessLookupError):  # SIGTERM was ignored, SIGKILL was sent by pid
        os.kill(panel.pid, 0)


def test_quantized_rate_window_scales_the_quota(bank: ReplayBank) -> None:
    """rate_window_s=1 with rpm 120: 2 requests per second, as a provider quantizing its minute does."""
    from starlette.testclient import TestClient

    from services.teachers.server import create_app

    cfg = PanelSimConfig(solutions_path=SOLUTIONS, questions_path=QUESTIONS, rpm_limit=120, rate_window_s=1.0)
    body = {"model": "6b_finetuning", "messages": [{"role": "user", "content": round0_prompt(bank.questions[2].question)}]}
    with TestClient(create_app(cfg, bank=bank)) as tc:
        codes = [tc.post("/v1/chat/completions", json=body).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        time.sleep(1.05)
        assert tc.post("/v1/chat/completions", json=body).status_code == 200
