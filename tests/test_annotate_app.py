"""The running app through `gradio_client` and raw HTTP: every flow, and the calls it must refuse.

A refusal is an answer (HTTP 200): every output unchanged (``{"__type__": "update"}``) but the status line,
which names the reason (``annotation_ui.app.refusal_reason``); the tests check that nothing was written.
One app per module (launch costs seconds): a temp SQLite DB with sample tasks, six accounts, items built.
"""

import json
import re
import uuid

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from annotation_ui.app import launch_app, refusal_reason
from annotation_ui.config import MAX_K, AnnotateConfig
from annotation_ui.sample_data import free_port, prepare_demo_db
from annotation_ui.users import set_active
from db.models import ArenaVote, Assignment, Ranking
from db.session import Database, dispose_engines, session_scope

PASSWORD = "annotate-app-pass"
ACCOUNTS = {
    "ann": "annotator",
    "bob": "annotator",
    "cat": "annotator",
    "dis": "annotator",
    "rev": "reviewer",
    "adm": "admin",
}
NO_RANKS = [None] * MAX_K
# API outputs (layout columns are not part of them): id, progress, prompt, 8 cards, 8 radios, comment, flag, status
CARDS = slice(3, 3 + MAX_K)
RADIOS = slice(3 + MAX_K, 3 + 2 * MAX_K)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('annotate') / 'app.db'}"
    prepare_demo_db(
        Database.at(url), accounts=ACCOUNTS, password=PASSWORD, tasks=16
    )  # items left for every test
    launched = launch_app(
        AnnotateConfig(k=3, bootstrap_rounds=20),
        Database.at(url),
        host="127.0.0.1",
        port=free_port(),
        block=False,
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


def unchanged(output) -> bool:
    """``gr.skip()`` as the client gets it (an HTML output comes wrapped in ``props``): no new value."""
    if not isinstance(output, dict) or output.get("__type__") != "update":
        return False
    props = output.get("props", {"__type__": "update"})
    return set(output) <= {"__type__", "props"} and props == {"__type__": "update"}


def refused(outputs, status: int = -1) -> str:
    """The reason of a refusal answer; fails unless every other output was left unchanged."""
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    reason = refusal_reason(outputs[status])
    assert reason is not None, f"not a refusal: {outputs[status]!r}"
    assert all(unchanged(o) for i, o in enumerate(outputs) if i != status % len(outputs)), outputs
    return reason


def written(db) -> tuple:
    """Everything an event could write: rankings, assignments, arena votes (with their winners)."""
    with session_scope(db) as s:
        return (
            s.query(Ranking).count(),
            sorted((a.id, a.status) for a in s.query(Assignment)),
            sorted((v.id, v.winner) for v in s.query(ArenaVote)),
        )


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
    board, _plot, note = rev.predict(api_name="/arena_leaderboard")
    assert sorted(row[0] for row in board["data"]) == ["dpo", "sft"] and note == ""
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
    who = client(app, caller)
    before = written(app[1])
    status = {"/admin_report": 0, "/arena_next": -1}.get(api, -1)
    assert message in refused(who.predict(*args, api_name=api), status)
    assert written(app[1]) == before


def test_forged_and_malformed_submissions_are_refused(app):
    ann, adm = client(app, "ann"), client(app, "adm")
    mine = ann.predict(api_name="/current_item")
    theirs = adm.predict(api_name="/current_item")
    assert mine[0] and theirs[0]
    before = written(app[1])
    cases = [
        ((theirs[0], "1", "2", "3", *NO_RANKS[3:]), "not yours"),  # someone else's assignment
        (("1 OR 1=1", "1", "2", "3", *NO_RANKS[3:]), "not a number"),
        ((mine[0], "1", None, "3", *NO_RANKS[3:]), "completion B has no rank"),
        ((mine[0], "1", "2", "7", *NO_RANKS[3:]), "rank '7' is not a number from 1 to 3"),  # not a choice
        ((mine[0], "1", "2", "3", "1", *NO_RANKS[4:]), "slot"),  # a 4th rank for a 3-completion item
    ]
    for args, message in cases:
        assert message in refused(ann.predict(*args, "", "", api_name="/submit"))
    assert "limit" in refused(ann.predict(*ranks_for(mine, 1, 2, 3), "x" * 6000, "", api_name="/submit"))
    assert "needs a reason" in refused(ann.predict(mine[0], "  ", "", "", api_name="/skip"))
    assert written(app[1]) == before
    with session_scope(app[1]) as s:
        assert s.query(Ranking).filter(Ranking.assignment_id == int(mine[0])).count() == 0
    # the refused item is still the user's to answer
    assert "Saved ranking" in ann.predict(*ranks_for(mine, 1, 2, 3), "", "", api_name="/submit")[-1]


def test_unranked_submit_is_refused_with_the_page_kept_then_saved(app):
    cat = client(app, "cat")
    state = cat.predict(api_name="/current_item")
    assert state[0], "cat has no item: the fixture must leave one for this test"
    before = written(app[1])
    reason = refused(cat.predict(*ranks_for(state, 2, 1), "", "", api_name="/submit"))
    assert reason == "completion C has no rank" and written(app[1]) == before
    assert cat.predict(api_name="/current_item")[0] == state[0]  # the same claim: nothing was lost
    assert "Saved ranking" in cat.predict(*ranks_for(state, 2, 1, 3), "", "", api_name="/submit")[-1]


def test_refusals_are_http_200_answers_never_500(app):
    """Raw HTTP, as the page and any script see it: direct events (no queue) and queued ones."""
    ann = client(app, "ann")
    mine = ann.predict(api_name="/current_item")
    before = written(app[1])
    with httpx.Client(base_url=app[0]) as http:
        assert http.post("login", data={"username": "ann", "password": PASSWORD}).status_code == 200
        for ranks in (["1", None, "3"], ["1", "2", "7"]):  # unranked; a value not among the radio choices
            data = [mine[0], *ranks, *NO_RANKS[3:], "", ""]
            resp = http.post("gradio_api/run/submit", json={"data": data})
            assert resp.status_code == 200, resp.text
            assert refusal_reason(resp.json()["data"][-1]), resp.text
        for api, data in (("arena_next", ["sft", "dpo"]), ("admin_report", [])):  # queued events (SSE)
            event = http.post(f"gradio_api/call/{api}", json={"data": data})
            assert event.status_code == 200, event.text
            stream = http.get(f"gradio_api/call/{api}/{event.json()['event_id']}").text
            assert "event: complete" in stream and "event: error" not in stream, stream
            payload = json.loads(stream.split("data:", 1)[1].splitlines()[0])
            assert any(refusal_reason(o) and "needs" in o for o in payload), payload
    assert written(app[1]) == before


def tab_select_event(http, tab: str) -> int:
    """The fn_index of the (private, page-only) handler that runs when tab ``tab`` is selected."""
    config = http.get("config").json()
    tab_ids = {c["id"] for c in config["components"] if c.get("props", {}).get("id") == tab}
    (index,) = [
        i
        for i, d in enumerate(config["dependencies"])
        if [t[1] for t in d["targets"] if t[0] in tab_ids] == ["select"]
    ]
    return index


def page_event(http, fn_index: int, data: list) -> list:
    """Run an event as the page does (join the queue, read the SSE stream); its outputs."""
    session = uuid.uuid4().hex
    join = {
        "data": data,
        "fn_index": fn_index,
        "session_hash": session,
        "event_data": None,
        "trigger_id": None,
    }
    assert http.post("gradio_api/queue/join", json=join).status_code == 200
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message["success"], message
                return message["output"]["data"]
    raise AssertionError("the event never completed")


@pytest.mark.parametrize(
    "caller,tab,data,status,filled",
    [
        ("rev", "arena", ["", "sft", "dpo"], 4, True),  # a pair (vote id, prompt, cards) and the leaderboard
        ("ann", "arena", ["", "sft", "dpo"], 4, False),
        ("adm", "admin", [], 0, True),
        ("rev", "admin", [], 0, False),
    ],
)
def test_selecting_a_tab_fills_it_for_its_roles_only(app, caller, tab, data, status, filled):
    before = written(app[1])
    with httpx.Client(base_url=app[0], timeout=60) as http:
        assert http.post("login", data={"username": caller, "password": PASSWORD}).status_code == 200
        outputs = page_event(http, tab_select_event(http, tab), data)
    if not filled:
        assert "may not do this" in refused(outputs, status) and written(app[1]) == before
    elif tab == "arena":
        vote_id, _, left, right, _ = outputs[:5]
        assert vote_id and 'class="ca-card"' in left and 'class="ca-card"' in right
    else:
        assert "Krippendorff alpha" in outputs[0] and refusal_reason(outputs[0]) is None


def test_disabled_account_is_refused_mid_session(app):
    dis = client(app, "dis")
    assert dis.predict(api_name="/current_item")[0]
    with session_scope(app[1]) as s:
        set_active(s, "dis", False)
    before = written(app[1])
    assert "disabled" in refused(dis.predict(api_name="/current_item"))
    assert written(app[1]) == before
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
