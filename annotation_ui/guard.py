"""The app's front door: an ASGI middleware in front of Gradio's routes (``launch_app`` installs it).

Gradio serves more than this app uses, and some of it without a login. The guard decides per route before
Gradio sees the request:

* **Login back-off.** ``POST /login`` is refused with 429 (JSON body, ``Retry-After``) once an account or a
  client address has too many failed logins in a moving window (``login_failures_per_account`` /
  ``login_failures_per_address``, counted by the ``limits`` library). Only failures count; a successful login
  clears its account's count. The address is the socket's peer: behind a proxy every user shares the proxy's
  address, so the per-address limit then bounds the whole team (raise it there; the per-account one stays).
* **No uploads.** No component of the app takes a file, so upload, recording and media-stream routes answer
  403 for everyone (Gradio would keep an upload in its cache directory).
* **Nothing for strangers.** Under ``/gradio_api/`` only what the login page itself needs answers without a
  session (:data:`OPEN`); the rest is 401. ``openapi.json`` is 404 (the client uses ``/gradio_api/info``).
* **Bounded streams.** A session holds at most ``max_streams_per_session`` open heartbeat streams (one per
  browser tab); more is 429.

Non-guarantees: the counts live in the server's memory (a restart forgets them; several server processes
count apart), and this is no defence against a distributed guesser beyond the per-account limit.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from codealign.config import ConfigError

# Under /gradio_api/: what a browser that is not logged in needs to show the login page.
OPEN = frozenset({"login_check", "token", "user", "app_id", "startup-events", "theme.css"})
# Routes that take files or media from the client: nothing in this app does.
UPLOADS = ("upload", "upload_progress", "process_recording", "stream/", "vibe-", "undo-vibe-")
CLOSED = frozenset({"openapi.json", "docs", "redoc"})


def parse_limit(text: str, what: str):
    """``"5/15 minutes"`` as a ``limits`` item; a one-line error naming ``what`` otherwise."""
    from limits import parse

    try:
        return parse(text)
    except ValueError:
        raise ConfigError(f'{what}: not a rate like "5/15 minutes": {text!r}') from None


class Guard:
    """Pure ASGI middleware (no body buffering except the login form, which is small and replayed)."""

    def __init__(
        self,
        app,
        *,
        login_failures_per_account: str,
        login_failures_per_address: str,
        max_streams_per_session: int,
    ):
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.app = app
        self.per_account = parse_limit(login_failures_per_account, "login_failures_per_account")
        self.per_address = parse_limit(login_failures_per_address, "login_failures_per_address")
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.max_streams = max_streams_per_session
        self.streams: Counter[str] = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = _route(scope)
        if path in ("/login", "/login/") and scope.get("method") == "POST":
            return await self._login(scope, receive, send)
        if not path.startswith("/gradio_api/"):
            return await self.app(scope, receive, send)
        name = path[len("/gradio_api/") :].rstrip("/")
        if name in CLOSED:
            return await _refuse(scope, send, 404, "not served by this app")
        if name.startswith(UPLOADS):
            return await _refuse(scope, send, 403, "this app takes no uploads")
        token = _session_token(scope)
        if name not in OPEN and token is None:
            return await _refuse(scope, send, 401, "log in first")
        if name.startswith("heartbeat/"):
            if self.streams[token] >= self.max_streams:
                return await _refuse(scope, send, 429, f"at most {self.max_streams} open pages per session")
            self.streams[token] += 1
            try:
                return await self.app(scope, receive, send)
            finally:
                self.streams[token] -= 1
                if not self.streams[token]:
                    del self.streams[token]
        return await self.app(scope, receive, send)

    async def _login(self, scope, receive, send):
        body, more = b"", True
        while more:  # the login form: a few hundred bytes
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > 64 * 1024:
                return await _refuse(scope, send, 413, "login form too large")
        account = await _account(scope, body)
        address = (scope.get("client") or ("unknown",))[0]
        keys = [(self.per_account, "account", account), (self.per_address, "address", address)]
        for item, kind, key in keys:
            if not self.limiter.test(item, kind, key):
                reset = self.limiter.get_window_stats(item, kind, key).reset_time
                wait = max(1, int(reset - time.time()) + 1)
                return await _refuse(
                    scope, send, 429, f"too many failed logins for this {kind}; try again in {wait} s", wait
                )

        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0

        async def watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, replay, watch)
        if status in (400, 422):  # Gradio's answers to wrong credentials and to a malformed form
            for item, kind, key in keys:
                self.limiter.hit(item, kind, key)
        elif status == 200 and account:
            self.limiter.clear(self.per_account, "account", account)


def _route(scope) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _session_token(scope) -> str | None:
    """The caller's Gradio session token when it is a live one (Gradio keeps them in ``app.tokens``)."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return None
    cookies = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                cookies[key] = val
    for key in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if cookies.get(key) in tokens:
            return cookies[key]
    return None


async def _account(scope, body: bytes) -> str:
    """The ``username`` field of the login form, urlencoded (clients) or multipart (Gradio's login page)."""
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    async def once():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except (
        HTTPException,
        ValueError,
    ):  # a malformed form: Gradio answers it (422); it still counts per address
        return ""
    value = form.get("username")
    return value.strip() if isinstance(value, str) else ""


async def _refuse(scope, send, status: int, message: str, retry_after: int | None = None):
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008, "reason": message})
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
