"""End to end in a real browser: Debian chromium driven by Playwright (never `playwright install`).

Log in, rank with keyboard and mouse, submit; the ranking is in the DB. Then a reviewer votes in the arena
with the keyboard. Set CODEALIGN_SCREENSHOTS=docs/img to refresh the documentation screenshots.
"""

import os
from pathlib import Path

import pytest

from annotation_ui.app import launch_app
from annotation_ui.config import AnnotateConfig
from annotation_ui.sample_data import free_port, prepare_demo_db
from db.models import ArenaVote, Assignment, Ranking
from db.session import dispose_engines, session_scope

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
PASSWORD = "browser-pass"
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
    prepare_demo_db(url, accounts={"ann": "annotator", "rev": "reviewer"}, password=PASSWORD)
    launched = launch_app(
        AnnotateConfig(k=3, bootstrap_rounds=20), url, host="127.0.0.1", port=free_port(), block=False
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


def test_annotator_ranks_with_keyboard_and_mouse(served, browser):
    base_url, db = served
    page, dialogs = login(browser, base_url, "ann")
    page.wait_for_selector("#card-col-2", state="visible", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#rank-2 input[type=radio]').length === 3")
    page.locator("#prompt").click()  # focus the page, outside any text box
    page.keyboard.press("a")
    for key in ("1", "2", "3"):  # A=1, B=2, C=3; the selection advances after each rank
        page.keyboard.press(key)
    page.locator("#rank-2 label", has_text="1").click()  # then the mouse makes C tie with A
    page.wait_for_function("document.querySelector('#rank-2 input[value=\"1\"]').checked")
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/annotator.png", full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Saved ranking')", timeout=30_000)
    with session_scope(db) as s:
        ranking = s.query(Ranking).one()
        order = s.get(Assignment, ranking.assignment_id).display_order
        got = {e.completion_id: e.rank for e in ranking.entries}
        assert [got[c] for c in order] == [1, 2, 1] and ranking.created_by == "annotator:ann"
    assert dialogs == []
    page.close()


def test_reviewer_votes_in_the_arena_with_the_keyboard(served, browser):
    base_url, db = served
    page, dialogs = login(browser, base_url, "rev")
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_function(
        "document.querySelector('#arena-policy-b input') && document.querySelector('#arena-policy-b input').value"
    )
    page.locator("#arena-prompt").click()
    page.keyboard.press("n")
    page.wait_for_selector("#arena-left .ca-card", timeout=30_000)
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/arena.png", full_page=True)
    page.keyboard.press("3")  # tie
    page.wait_for_selector("#arena-reveal:has-text('Left was')", timeout=30_000)
    with session_scope(db) as s:
        assert [v.winner for v in s.query(ArenaVote)] == ["tie"]
    assert dialogs == []
    page.close()
