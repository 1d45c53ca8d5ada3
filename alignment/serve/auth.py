"""``Authorization: Bearer <key>`` on every route but ``/health``, checked against :mod:`db.keys`.

The check reads the database on each request (no cache), so ``codealign keys revoke`` takes effect from the
next request on. It is a FastAPI dependency of the routes, which FastAPI resolves before the handler reads
the body: a request without a valid key is answered 401 whatever its body holds.
"""

from __future__ import annotations

from fastapi import Request

from alignment.serve.errors import ApiError
from db.keys import KeyInfo, KeyRejected, verify_key


def bearer_token(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``; None without the header; 401 for another scheme."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise ApiError(
            401,
            f"unsupported Authorization scheme {scheme[:20]!r}: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip() or None


def require_key(request: Request) -> KeyInfo:
    """The dependency that yields the caller's :class:`~db.keys.KeyInfo`, from the app's database
    (``app.state.db``). Sync: FastAPI runs it in its thread pool, so the read does not block the event loop."""
    token = bearer_token(request)
    try:
        with request.app.state.db.session() as session:
            return verify_key(session, token)
    except KeyRejected as exc:
        raise ApiError(
            401, str(exc), code=f"{exc.reason}_api_key", headers={"WWW-Authenticate": "Bearer"}
        ) from None
