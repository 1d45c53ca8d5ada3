"""API keys of the serving API (``codealign keys``, checked by ``codealign serve``): create, list, revoke, verify.

A key is ``ca-`` followed by 43 URL-safe characters from :mod:`secrets` (256 random bits). Only its SHA-256
is stored, with the first characters as a ``prefix`` to tell keys apart in ``keys list``; the key itself is
shown once, when it is created. A fast hash is the right one here (GitHub's and PyPI's tokens are stored the
same way): a slow password hash such as argon2 protects guessable secrets, and nothing guesses 256 random
bits, while every API request has to be checked without spending 50 ms and 64 MiB on it.

Guarantees: :func:`verify_key` accepts exactly the keys :func:`create_key` returned and that are not revoked;
a revoked key fails from the next request on (no cache); a key of another format, a forged key and a key of
an unknown prefix all fail the same way. Non-guarantee: ``keys list`` cannot show a key again (lose it,
revoke it and add a new one). This module imports no torch and no web framework.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from codealign.errors import UserError
from db.models import ApiKey, utcnow

KEY_PREFIX = "ca-"
_SHOWN_CHARS = 10  # "ca-" + 7 characters: enough to tell keys apart, far too few to guess the rest
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class KeyRejected(UserError):
    """A key that does not authenticate; ``reason`` is ``missing``, ``invalid`` or ``revoked``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.prefix, row.created_at, row.created_by, row.revoked_at)


def _by_name(session: Session, name: str) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise UserError(f"no API key named {name!r} (see `codealign keys list`)")
    return row


def create_key(session: Session, name: str, created_by: str) -> tuple[KeyInfo, str]:
    """A new key named ``name``: its row, and the key itself (not stored anywhere; show it once)."""
    if not _NAME_RE.match(name or ""):
        raise UserError(
            f"key name {name!r}: use 1-100 letters, digits, '_', '.', '-' (starting alphanumeric)"
        )
    existing = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if existing is not None:
        state = "revoked" if existing.revoked_at else "active"
        raise UserError(f"an API key named {name!r} already exists ({state}); choose another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=hash_key(key), prefix=key[:_SHOWN_CHARS], created_by=created_by)
    session.add(row)
    session.flush()
    return _info(row), key


def list_keys(session: Session) -> list[KeyInfo]:
    return [_info(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.name))]


def revoke_key(session: Session, name: str) -> tuple[KeyInfo, bool]:
    """Revoke the key ``name``; the second value is False when it already was (nothing changes then)."""
    row = _by_name(session, name)
    if row.revoked_at is not None:
        return _info(row), False
    row.revoked_at = utcnow()
    session.flush()
    return _info(row), True


def verify_key(session: Session, key: str | None) -> KeyInfo:
    """The active key ``key`` is; :class:`KeyRejected` with a message for the client otherwise."""
    if not key:
        raise KeyRejected(
            "missing",
            "no API key: send it as 'Authorization: Bearer <key>' (create one with `codealign keys add NAME`)",
        )
    row = None
    if key.startswith(KEY_PREFIX):
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None:
        raise KeyRejected("invalid", "invalid API key: not a key of this server")
    if row.revoked_at is not None:
        raise KeyRejected("revoked", f"API key {row.name!r} was revoked; ask for a new one")
    return _info(row)
