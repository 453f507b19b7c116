"""The debate page on debates the real generator stored: the simulated panel (replayed GSM8K model
outputs, some made malformed) over HTTP, ReConcile prompts with few-shot demos, re-asks. What the
page draws is checked against the API's JSON of the same debates, not against the test's own data."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from api_helpers import CHROMIUM, REPO_TESTS
from generator_helpers import panel_dict

from magdi.mag import JobStatus
from magdi.panel import parse_panel
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore
from services.generator.jobrun import new_worker_id, run_job
from services.generator.jobspec import build_spec, prepare
from services.generator.protocols import ProtocolConfig
from services.generator.settings import GeneratorSettings

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (install Debian's: `make browser`)")

# the generator tests' panel fixtures (`gsm8k`, `start_panel`), loaded under another module name
_spec = importlib.util.spec_from_file_location("generator_conftest_for_api", REPO_TESTS / "generator" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_generator_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_generator_conftest)
gsm8k = _generator_conftest.gsm8k
start_panel = _generator_conftest.start_panel
QUESTIONS = 3


def status_of(node: dict[str, Any]) -> str:
    if node["parse_status"] != "valid":
        return node["parse_status"]
    return {True: "correct", False: "incorrect", None: "unknown"}[node["correct"]]


def switches(mag: dict[str, Any]) -> set[str]:
    """Nodes whose answer differs from the same agent's previous valid answer."""
    found, last = set(), {}
    for node in sorted(mag["nodes"], key=lambda n: n["round"]):
        if node["parse_status"] != "valid" or node["answer"] is None:
            continue
        if node["agent"] in last and last[node["agent"]] != node["answer"]:
            found.add(node["id"])
        last[node["agent"]] = node["answer"]
    return found


@pytest.fixture
def generated(store: GraphStore, start_panel, gsm8k) -> list[str]:  # noqa: ANN001
    """Debates of a short job on the simulated panel, a third of its replies malformed (seeded)."""
    sim = start_panel(malformed_rate=0.3, seed=3)
    spec = build_spec(name="viewer-real", dataset="gsm8k", data_path=str(gsm8k["test"]), data_format="gsm8k",
                      offset=40, limit=QUESTIONS, panel=parse_panel(panel_dict(sim.base_url)),
                      protocol=ProtocolConfig(max_rounds=3))
    jobs, worker = JobStore(store), new_worker_id()
    settings = GeneratorSettings(concurrency=4, lease_s=30)
    jobs.create(spec, total=QUESTIONS, owner=worker, lease_s=settings.lease_s)
    result = asyncio.run(run_job(prepare(spec), store, jobs, worker, settings, claimed_at=time.monotonic()))
    assert result.status is JobStatus.COMPLETE
    return store.debate_ids()


def test_generated_debates_are_drawn_as_the_api_describes_them(generated, open_page):  # noqa: ANN001
    assert len(generated) == QUESTIONS
    seen: Counter[str] = Counter()
    for debate_id in generated:
        page = open_page(f"/viewer/debates/{debate_id}", 800)
        page.wait_for_selector("body[data-loaded=true]")
        base = page.url.split("/viewer/")[0]
        mag = httpx.get(f"{base}/v1/debates/{debate_id}", timeout=10).json()
        statuses = Counter(status_of(n) for n in mag["nodes"])
        seen.update(statuses)
        for status, n in statuses.items():
            assert page.locator(f"svg#mag circle.node.{status}").count() == n, (debate_id, status)
        labels = {n["id"]: page.text_content(f'svg#mag text.answer[data-node-id="{n["id"]}"]') for n in mag["nodes"]}
        for n in mag["nodes"]:
            if n["answer"] is not None and len(n["answer"]) <= 20:
                assert labels[n["id"]] == n["answer"]
        badges = page.locator("svg#mag circle.switch")
        assert {badges.nth(i).get_attribute("data-of") for i in range(badges.count())} == switches(mag)
        seen["switch"] += len(switches(mag))
        assert page.text_content("#team-answer-label") == (mag["team_answer"] or "–")[:12]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
        assert page.locator("svg#mag line.edge").count() == len(mag["edges"])
        rounds = max(n["round"] for n in mag["nodes"]) + 1
        for r in range(rounds):
            lines = page.locator(f'svg#mag g.tally[data-round="{r}"] text.tally-line').all_text_contents()
            valid = Counter(n["answer"] for n in mag["nodes"] if n["round"] == r and n["parse_status"] == "valid")
            assert sum(int(line.rsplit("×", 1)[1]) for line in lines if not line.startswith(("invalid", "absent"))) \
                == sum(valid.values())

        for n in mag["nodes"]:  # every node's prompt and outputs, as stored
            page.click(f'svg#mag circle.node[data-node-id="{n["id"]}"]')
            assert page.locator("#panel-prompt .message-content").all_text_contents() == \
                [m["content"] for m in n["prompt"]]
            assert page.locator("#panel-outputs .output").count() == len(n["outputs"])
            texts = [o["text"] for o in n["outputs"] if o["text"] is not None]
            assert page.locator("#panel-outputs .output-text").all_text_contents() == texts
            reasks = [o["reask"] for o in n["outputs"] if o["reask"]]  # a re-asked turn: the message sent
            assert page.locator("#panel-outputs .reask .message-content").all_text_contents() == reasks
            seen["re-asked"] += bool(reasks)
        assert not page.problems, page.problems
    # a mixed sample, not a clean one (seeded: correct, incorrect, invalid and re-asked nodes, switches)
    assert seen["invalid"] > 0 and seen["incorrect"] > 0 and seen["correct"] > 0 and seen["switch"] > 0, seen
    assert seen["re-asked"] > 0, seen
