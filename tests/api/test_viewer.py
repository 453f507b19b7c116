"""The MAG viewer in a real headless Chromium (Debian's, driven by playwright), against uvicorn."""

from __future__ import annotations

import pytest
from api_helpers import CHROMIUM, TOKEN, near, png_pixels, serve

from magdi.mag import Debate, ParseStatus, Response
from services.api.main import create_app

GREEN, RED, AMBER = (0x2E, 0x9D, 0x4F), (0xD6, 0x45, 0x41), (0xC7, 0x7C, 0x02)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (install Debian's: `make browser`)")


@pytest.fixture
def mag(store, make_debate) -> Debate:
    """3 agents x 3 rounds with one absent and one invalid node, plus a second debate for the list."""
    d = make_debate(5, rounds=3, job_id="job-view")
    responses = [r for r in d.responses if (r.agent, r.round) not in {("carol", 2), ("bob", 2)}]
    responses += [Response(agent="carol", round=2, parse_status=ParseStatus.ABSENT),
                  Response(agent="bob", round=2, parse_status=ParseStatus.INVALID, raw_text="??",
                           parse_error="no JSON")]
    edges = [e for e in d.edges if (e.target_agent, e.target_round) not in {("carol", 2), ("bob", 2)}]
    d = d.model_copy(update={"responses": responses, "edges": edges})
    store.write_debates([d, make_debate(6, job_id="job-view")])
    return d


def test_debate_page_draws_the_mag_and_shows_a_node(api_settings, mag, browser, tmp_path):
    with serve(create_app(api_settings)) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/debates/{mag.id}/view")  # redirects to /viewer/debates/<id>
        page.wait_for_selector("#status.error")
        assert "401" in page.inner_text("#status")  # reads need the token here
        page.fill("#token", TOKEN)
        page.click("#save-token")
        page.wait_for_selector("body[data-loaded=true]")

        circles = page.locator("svg#mag circle.node")
        assert circles.count() == len(mag.responses) == 9
        labels = sorted(circles.nth(i).get_attribute("data-label") for i in range(circles.count()))
        assert labels == sorted(str(r.label) for r in mag.responses)
        assert page.locator("svg#mag line.edge").count() == len(mag.edges)
        assert page.inner_text("#question h2") == mag.question.text

        node = next(r for r in mag.responses if r.agent == "bob" and r.round == 1)
        page.click(f'circle[data-node-id="{mag.response_id("bob", 1)}"]')
        assert page.inner_text("#panel-reasoning") == node.reasoning
        assert page.inner_text("#panel-answer") == node.answer
        assert page.inner_text("#panel-confidence") == f"{node.confidence:.2f}"

        shot = tmp_path / "mag.png"
        page.locator("svg#mag").screenshot(path=str(shot))
        pixels = png_pixels(shot.read_bytes())
        counts = {name: sum(1 for p in pixels if near(p, rgb)) for name, rgb in
                  (("green", GREEN), ("red", RED), ("amber: invalid", AMBER))}
        assert all(n > 200 for n in counts.values()), counts  # every colour drawn: not a blank image
        assert len(set(pixels)) > 10
        unexpected = [e for e in errors if "status of 401" not in e]  # the first, token-less load
        assert not unexpected, unexpected  # no script errors, no CSP violations, no missing assets


def test_list_page_filters_and_links_to_debates(api_settings, mag, browser):
    with serve(create_app(api_settings.model_copy(update={"open_reads": True}))) as base:
        page = browser.new_page()
        page.goto(f"{base}/viewer/?job=job-view")
        page.wait_for_selector("#debates tbody tr")
        assert page.locator("#debates tbody tr").count() == 2
        page.select_option("select[name=consensus]", "true")
        page.click("#filters button[type=submit]")
        page.wait_for_selector("#status:has-text('no debates match')")
        assert "consensus=true" in page.url and page.locator("#debates tbody tr").count() == 0
        page.select_option("select[name=consensus]", "")
        page.click("#filters button[type=submit]")
        page.wait_for_selector("#debates tbody tr")
        page.click(f"a[href='/viewer/debates/{mag.id}']")
        page.wait_for_selector("body[data-loaded=true]")
        assert page.locator("svg#mag circle.node").count() == 9


def test_node_labels_show_whole_answers_and_the_panel_prints_no_null(api_settings, store, make_debate, browser):
    """Labels were cut to 5 characters (115000 -> 11500, -129025 -> -1290) and the panel ended in 'null'."""
    long_answer = "1234567890123456789012345"  # longer than a label holds: ends in an ellipsis
    d = make_debate(7, rounds=1, gold="115000", job_id="job-view")
    answers = {"alice": "115000", "bob": "-129025", "carol": long_answer}
    d = d.model_copy(update={"responses": [r.model_copy(update={"answer": answers[r.agent]}) for r in d.responses]})
    store.write_debates([d])
    with serve(create_app(api_settings.model_copy(update={"open_reads": True}))) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/viewer/debates/{d.id}")
        page.wait_for_selector("body[data-loaded=true]")

        def label(agent: str) -> str:
            return page.text_content(f'svg#mag text.answer[data-node-id="{d.response_id(agent, 0)}"]') or ""

        assert label("alice") == "115000" and label("bob") == "-129025"
        assert label("carol") == long_answer[:19] + "…"
        assert long_answer in (page.text_content(f'circle[data-node-id="{d.response_id("carol", 0)}"] title') or "")
        for agent in answers:
            page.click(f'circle[data-node-id="{d.response_id(agent, 0)}"]')
            panel = page.inner_text("#panel")
            assert page.inner_text("#panel-answer") == answers[agent]
            assert "null" not in panel, panel


def test_api_docs_render_with_every_other_origin_blocked(api_settings, browser):
    """/docs draws every operation with the network cut off: Swagger UI comes from the API itself."""
    app = create_app(api_settings)
    operations = sum(len(item) for item in app.openapi()["paths"].values())
    with serve(app) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        blocked: list[str] = []

        def only_this_server(route):
            if route.request.url.startswith(base):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_server)
        page.goto(f"{base}/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
        assert page.locator(".swagger-ui .opblock").count() == operations
        assert not blocked, blocked


def test_list_shows_each_question_and_a_search_box_that_fits_800_px(api_settings, store, make_debate, browser,
                                                                   tmp_path):
    """The list shows each question (as text, HTML and all) and searches it on the server; with a
    window of 2 debates per request, one click still walks the windows until the matches are found."""
    texts = ["Janet's ducks lay 16 eggs per day.", "A robe takes 2 bolts of blue fiber.",
             "Josh decides to try flipping a house.", "<b>Janet</b> & her ducks <script>x()</script>",
             "James decides to run 3 sprints 3 times a week."]
    debates = []
    for i, text in enumerate(texts):
        d = make_debate(20 + i, job_id="job-list")
        q = d.question.model_copy(update={"text": text, "qid": f"q{i}"})
        debates.append(d.model_copy(update={"question": q}))
    store.write_debates(debates)
    settings = api_settings.model_copy(update={"open_reads": True, "search_window": 2})
    with serve(create_app(settings)) as base:
        page = browser.new_page(viewport={"width": 800, "height": 900})
        page.goto(f"{base}/viewer/")
        page.wait_for_selector("#debates tbody tr")
        links = page.locator("#debates td.question a")
        assert sorted(links.all_text_contents()) == sorted(texts)  # the question, not only an id
        assert page.locator("#debates b, #debates script").count() == 0
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
        page.screenshot(path=str(tmp_path / "list-800.png"), full_page=True)  # kept for a person to look at

        page.fill("input[name=q]", "DUCKS")
        page.click("#filters button[type=submit]")
        page.wait_for_selector("#status:has-text('2 debate(s)')")
        assert "q=DUCKS" in page.url
        assert sorted(links.all_text_contents()) == sorted(t for t in texts if "ducks" in t)
        page.fill("input[name=q]", debates[2].id[2:14])  # a piece of a debate id
        page.click("#filters button[type=submit]")
        page.wait_for_selector("#status:has-text('1 debate(s)')")
        assert links.all_text_contents() == [texts[2]]
        page.fill("input[name=q]", "no such question")
        page.click("#filters button[type=submit]")
        page.wait_for_selector("#status:has-text('no debates match')")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 800
