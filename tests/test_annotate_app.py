"""The running app through `gradio_client` and raw HTTP: every flow, and the calls it must refuse.

One app per module (launch costs seconds): a temp SQLite DB with sample tasks, four accounts, items built.
"""

import re

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError

from annotation_ui.app import launch_app
from annotation_ui.config import MAX_K, AnnotateConfig
from annotation_ui.sample_data import free_port, prepare_demo_db
from annotation_ui.users import set_active
from db.models import Ranking
from db.session import dispose_engines, session_scope

PASSWORD = "password123"
ACCOUNTS = {"ann": "annotator", "bob": "annotator", "dis": "annotator", "rev": "reviewer", "adm": "admin"}
NO_RANKS = [None] * MAX_K
# API outputs (layout columns are not part of them): id, progress, prompt, 8 cards, 8 radios, comment, flag, status
CARDS = slice(3, 3 + MAX_K)
RADIOS = slice(3 + MAX_K, 3 + 2 * MAX_K)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('annotate') / 'app.db'}"
    prepare_demo_db(url, accounts=ACCOUNTS, password=PASSWORD)
    launched = launch_app(
        AnnotateConfig(k=3, bootstrap_rounds=20), url, host="127.0.0.1", port=free_port(), block=False
    )
    yield launched.url, url
    launched.demo.close()
    dispose_engines()


def client(app, name):
    return Client(app[0], auth=(name, PASSWORD), verbose=False)


def ranks_for(state, *ranks):
    """Submit arguments: the shown item's assignment id, ranks for its slots, comment, flag reason."""
    return (state[0], *[str(r) for r in ranks], *NO_RANKS[len(ranks) :])


def shown_k(state) -> int:
    return sum(bool(c) for c in state[CARDS])


def test_annotator_ranks_skips_undoes_and_edits(app):
    ann = client(app, "ann")
    state = ann.predict(api_name="/current_item")
    assignment = state[0]
    assert assignment and "Ranked **0**" in state[1] and shown_k(state) == 3
    assert 'class="ca-code"' in state[3] and "linenos" in state[3]  # highlighted, numbered
    state = ann.predict(*ranks_for(state, 2, 1, 1), "readable", "", api_name="/submit")
    assert state[0] != assignment and "Saved ranking" in state[-1] and "Ranked **1**" in state[1]
    with session_scope(app[1]) as s:
        ranking = s.query(Ranking).filter(Ranking.created_by == "annotator:ann").one()
        assert ranking.comment == "readable" and sorted(e.rank for e in ranking.entries) == [1, 1, 2]
    skipped = state[0]
    state = ann.predict(skipped, "prompt is unclear", "", "tests look wrong", api_name="/skip")
    assert "Skipped" in state[-1] and state[0] not in (skipped, assignment)
    state = ann.predict(api_name="/undo")  # re-opens the skip
    assert state[0] == skipped and "Editing" in state[-1] and state[-2] == "tests look wrong"
    state = ann.predict(*ranks_for(state, 2, 1, 1), "", "", api_name="/submit")  # the skip becomes a ranking
    state = ann.predict(api_name="/undo")
    assert [r["value"] for r in state[RADIOS]][:3] == ["2", "1", "1"]  # the answer is pre-filled for editing
    state = ann.predict(*ranks_for(state, 1, 2, 3), "", "", api_name="/submit")
    assert "Updated ranking" in state[-1]
    with session_scope(app[1]) as s:
        rows = s.query(Ranking).filter(Ranking.created_by == "annotator:ann").all()
        assert len(rows) == 2 and not any(r.skipped for r in rows)


def test_completion_text_is_escaped_everywhere(app):
    """Rank everything `bob` is offered; the sample data contains a completion that tries to inject HTML."""
    bob = client(app, "bob")
    state = bob.predict(api_name="/current_item")
    seen_escaped = False
    while state[0]:
        for text in [state[2], *state[CARDS]]:
            assert "<script>" not in text and not re.search(r"<img[^>]*onerror", text)
            seen_escaped |= "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        state = bob.predict(*ranks_for(state, *range(1, shown_k(state) + 1)), "", "", api_name="/submit")
    assert seen_escaped, "the injection sample was never shown; the test did not exercise escaping"
    assert "No items left" in state[2]


def test_reviewer_arena_and_admin_report(app):
    rev = client(app, "rev")
    vote_id, _prompt, left, right, reveal = rev.predict("sft", "dpo", api_name="/arena_next")
    assert vote_id and "sft" not in left + right and "dpo" not in left + right and not reveal
    _, reveal = rev.predict(vote_id, api_name="/arena_vote_tie")
    assert "Left was" in reveal and {"sft", "dpo"} <= set(re.findall(r"\*\*(\w+)\*\*", reveal))
    board, _plot = rev.predict(api_name="/arena_leaderboard")
    assert sorted(row[0] for row in board["data"]) == ["dpo", "sft"]
    adm = client(app, "adm")
    item = adm.predict(api_name="/current_item")
    adm.predict(item[0], "too long to judge", "", "<b>tests</b> look wrong", api_name="/skip")
    summary, annotators, flagged, skips = adm.predict(api_name="/admin_report")
    assert "Krippendorff alpha (ordinal)" in summary and "Kendall tau-b" in summary
    assert {"ann", "bob"} <= {row[0] for row in annotators["data"]}
    assert ["adm", "<b>tests</b> look wrong"] in [row[2:4] for row in flagged["data"]]  # plain-text cells
    assert ["too long to judge", "1"] in skips["data"]


@pytest.mark.parametrize(
    "caller,api,args,message",
    [
        ("ann", "/admin_report", (), "needs admin"),
        ("rev", "/admin_report", (), "needs admin"),
        ("ann", "/arena_next", ("sft", "dpo"), "needs reviewer/admin"),
        ("ann", "/arena_vote_left", ("1",), "needs reviewer/admin"),
        ("rev", "/arena_vote_left", ("999999",), "not yours"),
        ("rev", "/arena_next", ("sft", "sft"), "two different"),
    ],
)
def test_role_and_ownership_checks(app, caller, api, args, message):
    with pytest.raises(AppError, match=message):
        client(app, caller).predict(*args, api_name=api)


def test_forged_and_malformed_submissions_are_refused(app):
    ann, adm = client(app, "ann"), client(app, "adm")
    mine = ann.predict(api_name="/current_item")
    theirs = adm.predict(api_name="/current_item")
    assert mine[0] and theirs[0]
    cases = [
        ((theirs[0], "1", "2", "3", *NO_RANKS[3:]), "not yours"),  # someone else's assignment
        (("1 OR 1=1", "1", "2", "3", *NO_RANKS[3:]), "not a number"),
        ((mine[0], "1", None, "3", *NO_RANKS[3:]), "has no rank"),
        ((mine[0], "1", "2", "7", *NO_RANKS[3:]), "not in the list of choices"),  # rejected by Gradio already
    ]
    for args, message in cases:
        with pytest.raises(AppError, match=message):
            ann.predict(*args, "", "", api_name="/submit")
    with pytest.raises(AppError, match="limit"):
        ann.predict(*ranks_for(mine, 1, 2, 3), "x" * 6000, "", api_name="/submit")
    with session_scope(app[1]) as s:
        assert s.query(Ranking).filter(Ranking.assignment_id == int(mine[0])).count() == 0


def test_disabled_account_is_refused_mid_session(app):
    dis = client(app, "dis")
    assert dis.predict(api_name="/current_item")[0]
    with session_scope(app[1]) as s:
        set_active(s, "dis", False)
    with pytest.raises(AppError, match="disabled"):
        dis.predict(api_name="/current_item")
    with pytest.raises(ValueError, match="Could not login"):  # and it can no longer log in
        client(app, "dis")


def test_unauthenticated_and_wrong_password_get_nothing(app):
    base = app[0]
    with pytest.raises(AuthenticationError):
        Client(base, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(base, auth=("ann", "wrong-password"), verbose=False)
    with httpx.Client(base_url=base) as http:
        assert http.get("config").status_code in (401, 403)
        assert http.post("gradio_api/call/submit", json={"data": [1] * 11}).status_code in (401, 403)
        assert http.post("login", data={"username": "ann", "password": "nope"}).status_code >= 400


def test_run_history_and_monitoring_are_off(app):
    with httpx.Client(base_url=app[0]) as http:
        assert http.post("login", data={"username": "ann", "password": PASSWORD}).status_code == 200
        config = http.get("config").json()
        assert config["run_history"] is False
        assert http.get("monitoring").status_code in (403, 404)
        assert http.get("gradio_api/runs").status_code in (403, 404)
