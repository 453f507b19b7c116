"""The debate page read at a glance, checked in a real headless Chromium on a debate stored in Neo4j.

The debate (`story`) is GSM8K's first test question with two recorded model solutions as
reasoning (their `<<16-3=13>>` calculator marks included), ReConcile prompts built by the
generator's own prompt code, and every kind of node: correct, incorrect, invalid after a re-ask,
absent, three answer switches (one to a wrong answer), and an answer that is an HTML payload.
"""

from __future__ import annotations

import json

import pytest
from api_helpers import CHROMIUM, near, png_pixels
from repo_data import data_file

from magdi.answers import recalibrate_confidence
from magdi.mag import (
    Agent,
    Debate,
    DebateStatus,
    Message,
    Output,
    ParseStatus,
    Question,
    Response,
    TaskType,
    full_visibility_edges,
)
from services.generator.protocols import prompts
from services.generator.protocols.prompts import Shown

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (install Debian's: `make browser`)")

GREEN, RED, AMBER, ORANGE, WHITE = (0x2E, 0x9D, 0x4F), (0xD6, 0x45, 0x41), (0xC7, 0x7C, 0x02), (0xE8, 0x59, 0x0C), \
    (0xFF, 0xFF, 0xFF)
PAYLOAD = "<img src=x onerror=\"document.body.dataset.pwned='img'\">"
SCRIPT = "<script>document.body.dataset.pwned='script'</script> I am sure & <b>certain</b>."
REASK_ERROR = "Expecting ',' delimiter: line 1 column 22"
# (agent, round) -> answer, confidence; None = invalid, "ABSENT" = absent
PLAN: dict[tuple[str, int], tuple[str | None, float | None]] = {
    ("alice", 0): ("18", 0.95), ("bob", 0): ("26", 0.6), ("carol", 0): (None, None),
    ("alice", 1): ("18", 0.9), ("bob", 1): ("18", 0.8), ("carol", 1): (PAYLOAD, 0.4),
    ("alice", 2): ("26", 0.7), ("bob", 2): ("ABSENT", None), ("carol", 2): ("18", 0.85),
}
STATUS = {"correct": 4, "incorrect": 3, "invalid": 1, "absent": 1}
SWITCHED = {("bob", 1): "26", ("alice", 2): "18", ("carol", 2): PAYLOAD}


def story_debate() -> Debate:
    question_row = json.loads(data_file("gsm8k", "test.jsonl").open().readline())
    solutions = json.loads(data_file("gsm8k", "model_solutions.jsonl").open().readline())
    question = Question(dataset="gsm8k", qid="0", text=question_row["question"], task=TaskType.NUMBER, gold_answer="18")
    reasoning = {"18": solutions["175b_verification"]["solution"], "26": solutions["6b_finetuning"]["solution"],
                 PAYLOAD: SCRIPT}
    round0 = prompts.round0_request(question, confidence=True)
    responses: list[Response] = []
    for (agent, rnd), (answer, confidence) in PLAN.items():
        shown = [Shown(r.agent, r.answer, r.reasoning or "", r.confidence) for r in responses
                 if r.round == rnd - 1 and r.parse_status is ParseStatus.VALID and r.answer is not None]
        prompt = [Message(role="user", content=round0 if rnd == 0 else prompts.reconcile_discussion(round0, shown))]
        if answer == "ABSENT":
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.ABSENT, prompt=prompt,
                                      parse_error="the endpoint failed 6 attempts (HTTP 503)", attempts=6,
                                      outputs=[Output(error="HTTP 503 after 6 attempts", attempts=6, latency_s=4.1)]))
        elif answer is None:
            first = Output(text="I think she makes about 20 dollars.", finish_reason="stop", tokens_in=300,
                           tokens_out=12, latency_s=0.9, attempts=1)
            second = Output(text='{"reasoning": "16 - 3 - 4 = 9" "answer": 18', finish_reason="length", tokens_in=330,
                            tokens_out=30, latency_s=1.4, attempts=3, reask=prompts.reask(REASK_ERROR, True))
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.INVALID, prompt=prompt,
                                      raw_text=second.text, parse_error=REASK_ERROR, outputs=[first, second],
                                      tokens_in=630, tokens_out=42, latency_s=2.3, attempts=4, model="bard"))
        else:
            raw = json.dumps({"reasoning": reasoning[answer], "answer": answer, "confidence": confidence})
            responses.append(Response(
                agent=agent, round=rnd, answer=answer, reasoning=reasoning[answer], confidence=confidence,
                recalibrated_confidence=recalibrate_confidence(confidence or 0.0), correct=answer == "18",
                raw_text=raw, model=f"{agent}-model", tokens_in=280 + 400 * rnd, tokens_out=50 + rnd, latency_s=0.84,
                attempts=1, finish_reason="stop", prompt=prompt,
                outputs=[Output(text=raw, finish_reason="stop", tokens_in=280 + 400 * rnd, tokens_out=50 + rnd,
                                latency_s=0.84, attempts=1)]))
    return Debate(question=question, job_id="job-story", protocol="reconcile",
                  panel=[Agent(name=a, model=f"{a}-model") for a in ("alice", "bob", "carol")],
                  responses=responses, edges=full_visibility_edges(responses), team_answer="18", team_correct=True,
                  majority_answer="18", consensus=False, rounds_used=3)


@pytest.fixture
def story(store) -> Debate:  # noqa: ANN001
    debate = story_debate()
    store.write_debates([debate])
    return debate


def load(open_page, debate: Debate, width: int = 1400):  # noqa: ANN001, ANN201
    page = open_page(f"/viewer/debates/{debate.id}", width)
    page.wait_for_selector("body[data-loaded=true]")
    return page


def node(debate: Debate, agent: str, rnd: int) -> str:
    return f'svg#mag circle.node[data-node-id="{debate.response_id(agent, rnd)}"]'


def visible_edges(page) -> list[tuple[str, str]]:  # noqa: ANN001
    return page.evaluate("""() => [...document.querySelectorAll('svg#mag line.edge')]
        .filter((l) => getComputedStyle(l).visibility === 'visible')
        .map((l) => [l.dataset.source, l.dataset.target])""")


def test_each_node_shows_its_mark_ring_answer_usage_and_switch(open_page, story):
    page = load(open_page, story)
    for status, n in STATUS.items():
        assert page.locator(f"svg#mag circle.node.{status}").count() == n, status
    glyphs = [t.strip() for t in page.locator("svg#mag text.glyph").all_text_contents()]
    assert {g: glyphs.count(g) for g in set(glyphs)} == {"✓": 4, "✗": 3, "!": 1, "–": 1}
    assert page.inner_text("#mark-counts") == "4 ✓ correct · 3 ✗ incorrect · 1 ! invalid · 1 – absent"
    assert "null" not in page.inner_text("main") and "undefined" not in page.inner_text("main")

    for (agent, rnd), (answer, confidence) in PLAN.items():
        rid = story.response_id(agent, rnd)
        label = page.text_content(f'svg#mag text.answer[data-node-id="{rid}"]')
        expected = {None: "(invalid)", "ABSENT": "(absent)", PAYLOAD: PAYLOAD[:19] + "…"}.get(answer, answer)
        assert label == expected, (agent, rnd)
        ring = page.locator(f'svg#mag circle.ring[data-of="{rid}"]')
        if confidence is None:
            assert ring.count() == 0
        else:  # the ring's drawn arc is the confidence's share of its circumference
            drawn, whole = (float(x) for x in ring.get_attribute("stroke-dasharray").split())
            assert drawn / whole == pytest.approx(confidence, abs=0.01)
        badge = page.locator(f'svg#mag circle.switch[data-of="{rid}"]')
        assert badge.count() == (1 if (agent, rnd) in SWITCHED else 0), (agent, rnd)
    assert page.locator("svg#mag path.switch-arc").count() == len(SWITCHED)
    title = page.text_content(f'{node(story, "alice", 2)} title')
    assert "switched from 18" in title and "incorrect" in title and "confidence 0.70" in title

    meta = {rid: page.text_content(f'svg#mag text.meta[data-of="{rid}"]')
            for rid in (story.response_id("alice", 1), story.response_id("carol", 0))}
    assert meta[story.response_id("alice", 1)] == "0.8 s · 51 tok"
    assert meta[story.response_id("carol", 0)] == "2.3 s · 42 tok · ×4"  # four HTTP attempts, flagged
    assert not page.problems, page.problems


def test_the_vote_tally_of_every_round_and_the_team_answer_are_on_the_graph(open_page, story):
    page = load(open_page, story)
    tallies = [page.locator(f'svg#mag g.tally[data-round="{r}"] text.tally-line').all_text_contents()
               for r in range(3)]
    assert tallies == [["18 ×1", "26 ×1", "invalid ×1"],
                       ["18 ×2", PAYLOAD[:15] + "… ×1"],
                       ["18 ×1", "26 ×1", "absent ×1"]]  # 18 first: recalibrated 0.5 against 0.3
    assert (page.inner_text("#team-answer"), page.inner_text("#majority-answer"), page.inner_text("#debate-state")) \
        == ("18 (correct: yes)", "18", "complete, no, 3")
    team = page.locator("svg#mag #team-node")
    assert team.get_attribute("data-status") == "correct"
    assert page.text_content("#team-answer-label") == "18"
    # the agents' votes are their latest valid answers: alice 26 (round 2), bob 18 (round 1), carol 18
    assert page.text_content("#team-votes") == "2 of 3 votes"
    agree = page.locator("svg#mag path.vote.agree")
    assert sorted(agree.nth(i).get_attribute("data-of") for i in range(agree.count())) == \
        sorted([story.response_id("bob", 1), story.response_id("carol", 2)])
    assert page.locator("svg#mag path.vote.dissent").get_attribute("data-of") == story.response_id("alice", 2)


def test_round_edges_are_bundled_and_a_hover_shows_the_exact_ones(open_page, story):
    page = load(open_page, story)
    assert page.locator("svg#mag line.edge").count() == len(story.edges) == 12
    assert visible_edges(page) == []  # two all-to-all rounds: no hairball, two bundles
    assert page.locator("svg#mag g.bundle").count() == 2
    assert page.locator("svg#mag g.bundle path.stub").count() == (2 + 3) + (3 + 2)  # one stub per node, not n^2

    bob = story.response_id("bob", 1)
    page.hover(node(story, "bob", 1))
    shown = visible_edges(page)
    expected = sorted((story.response_id(e.source_agent, e.source_round), story.response_id(e.target_agent, e.target_round))
                      for e in story.edges if bob in (story.response_id(e.source_agent, e.source_round),
                                                      story.response_id(e.target_agent, e.target_round)))
    assert sorted(map(tuple, shown)) == expected and len(expected) == 2 + 2  # from alice, bob; to alice, carol

    page.mouse.move(1, 1)
    assert visible_edges(page) == []
    page.hover('svg#mag g.bundle[data-group="1-2"] circle.hub')
    assert len(visible_edges(page)) == 6
    page.mouse.move(1, 1)
    page.focus(node(story, "carol", 2))  # the keyboard shows them too
    assert len(visible_edges(page)) == 3


def test_the_panel_shows_the_prompt_as_sent_every_output_and_the_usage(open_page, story):
    page = load(open_page, story)
    carol = story.response("carol", 0)
    page.click(node(story, "carol", 0))
    assert page.inner_text("#panel-status") == "! invalid"
    prompt = page.locator("#panel-prompt .message-content")
    assert prompt.all_text_contents() == [m.content for m in carol.prompt] and prompt.first.is_visible()
    assert "How much in dollars does she make every day" in prompt.first.inner_text()
    outputs = page.locator("#panel-outputs .output")
    assert outputs.count() == 2
    assert page.locator("#panel-outputs .output-text").all_text_contents() == [o.text for o in carol.outputs]
    assert page.text_content("#panel-outputs .reask .message-content") == carol.outputs[1].reask
    assert REASK_ERROR in outputs.nth(1).inner_text() and "3 HTTP attempt(s)" in outputs.nth(1).inner_text()
    assert "length" in outputs.nth(1).inner_text() and "330 → 30 tokens" in outputs.nth(1).inner_text()
    assert (page.inner_text("#panel-latency"), page.inner_text("#panel-tokens"), page.inner_text("#panel-attempts")) \
        == ("2.3 s", "630 / 42", "4")
    assert page.inner_text("#panel-label") == "2 (absent, invalid or unknown)"  # the label the trainer learns

    bob = story.response("bob", 1)
    page.click(node(story, "bob", 1))
    assert page.inner_text("#panel-switch") == "from 26 (round 0)"
    assert page.inner_text("#panel-label") == "1 (correct)"
    assert page.locator("#panel-prompt .message-content").all_text_contents() == [bob.prompt[0].content]
    assert "There is 1 agent who thinks the answer is 26." in page.inner_text("#panel-prompt")
    assert "<<16-3=13>>" in page.inner_text("#panel-prompt")  # the shown solution, verbatim
    assert page.locator("#panel-outputs .output").count() == 1
    assert page.text_content("#panel-outputs .output-text") == bob.outputs[0].text

    page.click(node(story, "bob", 2))
    assert page.inner_text("#panel-status") == "– absent"
    assert "HTTP 503 after 6 attempts" in page.inner_text("#panel-outputs")
    assert "null" not in page.inner_text("#panel")


def test_model_html_is_shown_as_text_and_never_runs(open_page, story):
    page = load(open_page, story)
    page.click(node(story, "carol", 1))
    assert page.text_content("#panel-answer") == PAYLOAD
    assert page.text_content("#panel-reasoning") == SCRIPT
    page.click(node(story, "carol", 2))  # its prompt quotes the payload
    assert PAYLOAD in page.text_content("#panel-prompt")
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    assert page.evaluate("() => document.scripts.length") == 3  # the page's own three
    assert page.evaluate("() => document.body.dataset.pwned") is None
    assert not page.problems, page.problems


def test_the_page_fits_an_800_px_window_and_the_screenshot_shows_the_marks(open_page, story, tmp_path):
    page = load(open_page, story, width=800)
    sizes = page.evaluate("""() => {
        const graph = document.querySelector('.graph-scroll'), svg = document.getElementById('mag');
        const box = svg.getBoundingClientRect(), card = graph.getBoundingClientRect();
        const texts = [...svg.querySelectorAll('text')].map((t) => t.getBoundingClientRect());
        return { page: document.documentElement.scrollWidth, graph: graph.scrollWidth - graph.clientWidth,
                 svgRight: box.right, cardRight: card.right,
                 textsOut: texts.filter((t) => t.left < box.left - 0.5 || t.right > box.right + 0.5).length,
                 panelBelow: document.getElementById('panel').getBoundingClientRect().top >= card.bottom };
    }""")
    assert sizes["page"] <= 800, sizes  # no horizontal scrolling of the page
    assert sizes["graph"] == 0 and sizes["svgRight"] <= sizes["cardRight"], sizes  # nor of the graph card
    assert sizes["textsOut"] == 0 and sizes["panelBelow"], sizes

    page.screenshot(path=str(tmp_path / "page-800.png"), full_page=True)  # kept for a person to look at
    shot = tmp_path / "story-800.png"
    page.locator("svg#mag").screenshot(path=str(shot))
    pixels = png_pixels(shot.read_bytes())
    assert sum(near(p, ORANGE) for p in pixels) > 3 * 60  # three switch badges and their arcs
    expect = {"correct": GREEN, "incorrect": RED, "invalid": AMBER, "absent": WHITE}
    for (agent, rnd) in PLAN:
        circle = page.locator(node(story, agent, rnd))
        box = circle.bounding_box()
        inner = page.screenshot(clip={"x": box["x"] + 7, "y": box["y"] + 7, "width": box["width"] - 14,
                                      "height": box["height"] - 14})
        colours = png_pixels(inner)
        share = sum(near(p, expect[circle.get_attribute("data-status")]) for p in colours) / len(colours)
        assert share > 0.5, (agent, rnd, share)  # the mark's colour fills the node (around its glyph)
    page.click(node(story, "carol", 0))  # the panel sits under the graph: clicking brings it into view
    assert page.locator("#panel-prompt").is_visible()
    page.locator("#panel").screenshot(path=str(tmp_path / "panel-800.png"))


def test_a_large_debate_stays_readable_in_an_800_px_window(open_page, store, make_debate):
    """Ten agents over six rounds: 500 INFORMS edges. The page draws one stub per node instead of
    every edge, lists at most five answers per round, and scrolls the graph (not the page) sideways
    with the agents' names kept in view."""
    agents = tuple(f"agent-{k}" for k in range(10))
    big = make_debate(7, agents=agents, rounds=6)
    store.write_debates([big])
    page = load(open_page, big, width=800)
    assert page.locator("svg#mag circle.node").count() == 60
    assert page.locator("svg#mag line.edge").count() == len(big.edges) == 5 * 10 * 10
    assert visible_edges(page) == []
    assert page.locator("svg#mag g.bundle path.stub").count() == 5 * (10 + 10)
    for r in range(6):  # 10 answers in a round: four listed, the rest summed up
        lines = page.locator(f'svg#mag g.tally[data-round="{r}"] text.tally-line').all_text_contents()
        assert len(lines) == 5 and lines[0] == "18 ×5" and lines[-1] == "+2 more ×2", (r, lines)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 800

    page.hover(node(big, "agent-4", 3))  # a middle node: its 10 inputs and 10 readers, nothing else
    assert len(visible_edges(page)) == 20

    def in_view(selector: str) -> bool:
        return page.evaluate("""(sel) => {
            const card = document.querySelector('.graph-scroll').getBoundingClientRect();
            const box = document.querySelector(sel).getBoundingClientRect();
            return box.left >= card.left && box.right <= card.right; }""", selector)

    assert not in_view("#team-node")  # the graph is wider than the window: it scrolls inside its card
    page.evaluate("() => { const box = document.querySelector('.graph-scroll'); box.scrollLeft = box.scrollWidth; }")
    page.wait_for_function("() => document.querySelector('svg#mag g.names').classList.contains('stuck')")
    assert in_view("#team-node")
    assert all(in_view(f'svg#mag text.agent[data-agent="{a}"]') for a in agents)  # the names stayed
    page.click(node(big, "agent-9", 5))  # the last round's nodes, under the names column no more
    assert page.inner_text("#panel-answer") == big.response("agent-9", 5).answer
    assert not page.problems, page.problems


def test_a_running_and_a_failed_debate_read_as_such(open_page, store, make_debate):
    """Mid-debate there is no team answer yet; a debate that failed before any answer has no node."""
    running = make_debate(1, rounds=1).model_copy(update={
        "status": DebateStatus.RUNNING, "team_answer": None, "team_correct": None, "majority_answer": None,
        "rounds_used": None})
    failed = make_debate(2, rounds=1).model_copy(update={
        "status": DebateStatus.FAILED, "team_answer": None, "team_correct": None, "majority_answer": None,
        "rounds_used": None, "responses": [], "edges": [], "error": "every endpoint of the panel failed (HTTP 503)"})
    store.write_debates([running, failed])

    page = load(open_page, running)
    assert page.inner_text("#debate-state").startswith("running")
    assert page.text_content("svg#mag #team-node .team-title") == "team: pending"
    assert page.text_content("#team-answer-label") == "–"
    assert page.locator("svg#mag path.vote.agree").count() == 0
    assert page.locator("svg#mag path.vote.dissent").count() == 3  # each agent's vote so far, none counted yet
    assert not page.problems, page.problems

    page = load(open_page, failed)
    assert page.inner_text("#debate-state").startswith("failed")
    assert "every endpoint of the panel failed (HTTP 503)" in page.inner_text("#question")
    assert page.locator("svg#mag circle.node").count() == 0
    assert page.text_content("#team-votes") == "no votes"
    assert "null" not in page.inner_text("main") and "NaN" not in page.inner_html("svg#mag")
    assert not page.problems, page.problems
