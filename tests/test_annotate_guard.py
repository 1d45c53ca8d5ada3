"""The app's front door (annotation_ui.guard) against a running server: login back-off, no uploads, nothing
for strangers, bounded streams. One app with tight limits; per-address tests come from their own loopback
source address so they do not lock the others out."""

import httpx
import pytest

from annotation_ui.app import launch_app
from annotation_ui.config import AnnotateConfig
from annotation_ui.sample_data import free_port, prepare_demo_db
from codealign.config import ConfigError
from db.session import Database, dispose_engines

PASSWORD = "guard-app-pass-9"
ACCOUNTS = {"ann": "annotator", "bob": "annotator", "cat": "annotator", "adm": "admin"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('guard') / 'app.db'}"
    prepare_demo_db(Database.at(url), accounts=ACCOUNTS, password=PASSWORD, tasks=4)
    cfg = AnnotateConfig(
        k=3,
        bootstrap_rounds=0,
        login_failures_per_account="3/15 minutes",
        login_failures_per_address="5/15 minutes",
        max_streams_per_session=2,
    )
    launched = launch_app(cfg, Database.at(url), host="127.0.0.1", port=free_port(), block=False)
    yield launched.url
    launched.demo.close()
    dispose_engines()


def http(app, source: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(base_url=app, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("login", data={"username": name, "password": password})


def test_failed_logins_lock_the_account_out_with_429_and_retry_after(app):
    with http(app) as client:
        assert login(client, "bob", "wrong-1").status_code == 400
        assert login(client, "bob").status_code == 200  # a success clears the account's count
        for attempt in range(3):
            assert login(client, "bob", f"wrong-{attempt}").status_code == 400
        locked = login(client, "bob")  # the right password too: the window is what protects it
        assert locked.status_code == 429
        assert "account" in locked.json()["error"]
        assert 1 <= int(locked.headers["retry-after"]) <= 15 * 60 + 1
        assert login(client, "cat").status_code == 200  # other accounts are not affected


def test_failed_logins_from_one_address_are_throttled_across_accounts(app):
    with http(app, source="127.0.0.7") as client:
        for attempt in range(5):  # a different (unknown) account each time: the per-account limit never trips
            assert login(client, f"guess{attempt}", "pw").status_code == 400
        throttled = login(client, "ann")
        assert throttled.status_code == 429 and "address" in throttled.json()["error"]
        assert int(throttled.headers["retry-after"]) >= 1
    with http(app) as other:  # another address still logs in
        assert login(other, "ann").status_code == 200


def test_the_browser_login_form_counts_too(app):
    """Gradio's login page posts multipart form data; its failures count like the urlencoded ones."""
    with http(app, source="127.0.0.8") as client:
        for attempt in range(3):
            resp = client.post(
                "login", files={"username": (None, "adm"), "password": (None, f"no-{attempt}")}
            )
            assert resp.status_code == 400
        assert login(client, "adm").status_code == 429


def test_uploads_are_refused_for_everyone(app):
    with http(app) as client:
        assert login(client, "ann").status_code == 200
        resp = client.post("gradio_api/upload", files={"files": ("x.txt", b"data " * 100)})
        assert resp.status_code == 403 and resp.json()["error"] == "this app takes no uploads"
        assert client.get("gradio_api/upload_progress", params={"upload_id": "x"}).status_code == 403


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "gradio_api/heartbeat/abc123"),
        ("POST", "gradio_api/cancel"),
        ("POST", "gradio_api/reset"),
        ("GET", "gradio_api/runs"),
        ("GET", "gradio_api/custom_component/x/y/z/w"),
    ],
)
def test_gradio_routes_need_a_session(app, method, route):
    with http(app) as client:
        resp = client.request(method, route, json={"session_hash": "abc123", "event_id": "e", "fn_index": 0})
        assert resp.status_code == 401 and resp.json()["error"] == "log in first"
        assert client.get("gradio_api/login_check").status_code == 401  # the login page's own probe answers


def test_openapi_is_not_served_even_after_login(app):
    with http(app) as client:
        assert client.get("gradio_api/openapi.json").status_code == 404
        assert login(client, "cat").status_code == 200
        assert client.get("gradio_api/openapi.json").status_code == 404
        assert client.get("gradio_api/info").status_code == 200  # what gradio_client uses


def test_a_session_holds_a_bounded_number_of_streams(app):
    with http(app) as client:
        assert login(client, "ann").status_code == 200
        with (
            client.stream("GET", "gradio_api/heartbeat/s1") as first,
            client.stream("GET", "gradio_api/heartbeat/s2") as second,
        ):
            assert first.status_code == second.status_code == 200
            third = client.get("gradio_api/heartbeat/s3")
            assert third.status_code == 429 and "open pages" in third.json()["error"]


def test_bad_limits_are_config_errors():
    with pytest.raises(ConfigError, match="login_failures_per_account"):
        AnnotateConfig(login_failures_per_account="lots")
    with pytest.raises(ConfigError, match="max_streams_per_session"):
        AnnotateConfig(max_streams_per_session=0)
