"""End to end in a real browser: Debian chromium driven by Playwright (never `playwright install`).

Log in, rank with keyboard and mouse, submit; the ranking is in the DB. A submit with a completion left
unranked is refused inline and keeps the page. A reviewer votes in the arena with the keyboard; the arena
and admin tabs fill when selected. Set CODEALIGN_SCREENSHOTS=docs/img to refresh the documentation
screenshots.
"""

import os
from pathlib import Path

import pytest

from annotation_ui.app import launch_app
from annotation_ui.config import AnnotateConfig
from annotation_ui.sample_data import free_port, prepare_demo_db
from db.models import ArenaVote, Assignment, Ranking
from db.session import Database, dispose_engines, session_scope

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
PASSWORD = "browser-pass"
K = 4
SCREENSHOTS = os.environ.get("CODEALIGN_SCREENSHOTS")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian chromium: apt-get install -y chromium"
    ),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'b.db'}"
    accounts = {"ann": "annotator", "amy": "annotator", "rev": "reviewer", "adm": "admin"}
    prepare_demo_db(Database.at(url), accounts=accounts, password=PASSWORD, k=K)
    launched = launch_app(
        AnnotateConfig(k=K, bootstrap_rounds=20),
        Database.at(url),
        host="127.0.0.1",
        port=free_port(),
        block=False,
    )
    yield launched.url, url
    launched.demo.close()
    dispose_engines()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(browser, base_url: str, name: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))  # an XSS alert would land here
    page.goto(base_url)
    page.wait_for_selector("input[type=password]", timeout=30_000)
    page.fill("input[type=text]", name)
    page.fill("input[type=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#who strong", timeout=30_000)
    return page, dialogs


def open_item(browser, base_url: str, name: str):
    page, dialogs = login(browser, base_url, name)
    page.wait_for_selector(f"#card-col-{K - 1}", state="visible", timeout=30_000)
    page.wait_for_function(f"document.querySelectorAll('#rank-{K - 1} input[type=radio]').length === {K}")
    page.locator("#prompt").click()  # focus the page, outside any text box
    return page, dialogs


def checked_ranks(page) -> list:
    return page.evaluate(
        f"[...Array({K}).keys()].map(i => (document.querySelector(`#rank-${{i}} input:checked`) || {{}}).value)"
    )


def saved_ranks(db, name: str) -> list[int]:
    """The ranks `name` stored, in the order the page showed the completions."""
    with session_scope(db) as s:
        ranking = s.query(Ranking).filter(Ranking.created_by == f"annotator:{name}").one()
        order = s.get(Assignment, ranking.assignment_id).display_order
        got = {e.completion_id: e.rank for e in ranking.entries}
        return [got[c] for c in order]


def test_annotator_ranks_with_keyboard_and_mouse(served, browser):
    base_url, db = served
    page, dialogs = open_item(browser, base_url, "ann")
    page.keyboard.press("a")
    for key in ("1", "2", "3", "4"):  # A=1, B=2, C=3, D=4; the selection advances after each rank
        page.keyboard.press(key)
    page.locator("#rank-2 label", has_text="1").click()  # then the mouse makes C tie with A
    page.wait_for_function("document.querySelector('#rank-2 input[value=\"1\"]').checked")
    # the skip reason is readable: the box shows the whole default reason, not a cut-off start
    assert page.input_value("#skip-reason input") == "cannot judge: unfamiliar topic"
    assert page.eval_on_selector("#skip-reason input", "el => el.scrollWidth <= el.clientWidth")
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/annotator.png", full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Saved ranking')", timeout=30_000)
    assert saved_ranks(db, "ann") == [1, 2, 1, 3]  # dense: [1, 2, 1, 4] -> [1, 2, 1, 3]
    assert dialogs == []
    page.close()


def test_unranked_submit_is_refused_inline_and_keeps_the_page(served, browser):
    base_url, db = served
    page, dialogs = open_item(browser, base_url, "amy")
    page.keyboard.press("a")
    for key in ("1", "2", "3"):  # D is left without a rank
        page.keyboard.press(key)
    page.wait_for_function("document.querySelector('#rank-2 input[value=\"3\"]').checked")
    page.keyboard.press("Enter")
    refusal = page.locator("#status .ca-refused")
    refusal.wait_for(timeout=30_000)
    assert "completion D has no rank" in refusal.inner_text()
    for i in range(K):  # the code cards are still there
        assert page.locator(f"#card-{i} .ca-code").is_visible()
    assert checked_ranks(page) == ["1", "2", "3", None]  # and the ranks given so far
    assert page.locator(".ca-col .error").count() == 0  # no "Error" badges over the components
    with session_scope(db) as s:
        assert s.query(Ranking).filter(Ranking.created_by == "annotator:amy").count() == 0
    page.keyboard.press("d")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Saved ranking')", timeout=30_000)
    assert saved_ranks(db, "amy") == [1, 2, 3, 4]
    assert dialogs == []
    page.close()


def test_reviewer_votes_in_the_arena_with_the_keyboard(served, browser):
    base_url, db = served
    page, dialogs = login(browser, base_url, "rev")
    assert page.get_by_role("tab", name="Admin").count() == 0  # not a reviewer's page
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_selector("#arena-left .ca-card", timeout=30_000)  # a pair without pressing anything
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/arena.png", full_page=True)
    page.get_by_text("Leaderboard").click()  # filled too, before any Refresh
    page.wait_for_selector("#arena-board-status:has-text('No votes yet')", timeout=30_000)
    page.locator("#arena-prompt").click()
    page.keyboard.press("3")  # tie
    page.wait_for_selector("#arena-reveal:has-text('Left was')", timeout=30_000)
    with session_scope(db) as s:
        assert [v.winner for v in s.query(ArenaVote)] == ["tie"]
    assert dialogs == []
    page.close()


def test_admin_page_is_filled_when_its_tab_is_selected(served, browser):
    base_url, _ = served
    page, dialogs = login(browser, base_url, "adm")
    page.get_by_role("tab", name="Admin").click()
    page.wait_for_selector("#admin-summary:has-text('Krippendorff alpha')", timeout=30_000)  # no Refresh
    assert dialogs == []
    page.close()
