"""Accounts: argon2id password hashes, roles, enable/disable, login check. No gradio import.

Guarantees: passwords are stored only as argon2id hashes (``argon2-cffi`` defaults: 64 MiB, 3 passes);
a new password must pass :func:`check_password` (at least 10 characters, not only whitespace, and zxcvbn
strength >= 3 of 4, which refuses common passwords, keyboard runs, repeats and the account's own name);
:func:`authenticate` spends the same hashing work for unknown names as for known ones; a disabled account
fails :func:`authenticate` and :func:`require_user`, so every app event refuses it at once (the app checks
per event, not only at login). Non-guarantee: Gradio keeps login sessions in process memory; disabling a
user does not delete their session cookie, it only makes every event of that session fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from codealign.errors import UserError
from db.models import Annotator

ROLES = ("annotator", "reviewer", "admin")
MIN_PASSWORD_LENGTH = 10
# zxcvbn's 0..4 scale; 3 = "safely unguessable: moderate protection from an offline slow-hash attack"
# (about 1e8..1e10 guesses), the attack an argon2id hash is there to slow down.
MIN_PASSWORD_SCORE = 3
_ZXCVBN_MAX_LENGTH = 72  # zxcvbn refuses longer input; the strength of a long password shows in its start
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_hasher = None


class PermissionDenied(UserError):
    """The caller is not logged in, disabled, or lacks the role for this event."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    active: bool

    @property
    def actor(self) -> str:
        """The ``created_by`` value for rows this user produces."""
        return f"annotator:{self.name}"


def _password_hasher():
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


def _as_user(row: Annotator) -> User:
    return User(id=row.id, name=row.name, role=row.role, active=row.active)


def check_password(password: str, name: str = "") -> None:
    """Refuse a weak new password with one line (module docstring); ``name`` counts as a guessable word."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise UserError("password: must not be only spaces")
    from zxcvbn import zxcvbn

    result = zxcvbn(password[:_ZXCVBN_MAX_LENGTH], user_inputs=[name] if name else [])
    if result["score"] < MIN_PASSWORD_SCORE:
        why = (result["feedback"]["warning"] or "it follows a guessable pattern").rstrip(".")
        why = why[:1].lower() + why[1:]
        raise UserError(
            f"password: too easy to guess ({why}); use a passphrase of three or four unrelated words"
        )


def hash_password(password: str, name: str = "") -> str:
    check_password(password, name)
    return _password_hasher().hash(password)


def add_user(session: Session, name: str, password: str, role: str, created_by: str) -> User:
    if not _NAME_RE.match(name or ""):
        raise UserError(
            f"user name {name!r}: use 1-100 letters, digits, '_', '.', '-' (starting alphanumeric)"
        )
    if role not in ROLES:
        raise UserError(f"--role {role!r}: must be one of {', '.join(ROLES)}")
    if session.scalar(select(Annotator).where(Annotator.name == name)) is not None:
        raise UserError(f"user {name!r} already exists")
    row = Annotator(
        name=name, password_hash=hash_password(password, name), role=role, active=True, created_by=created_by
    )
    session.add(row)
    session.flush()
    return _as_user(row)


def list_users(session: Session) -> list[User]:
    return [_as_user(r) for r in session.scalars(select(Annotator).order_by(Annotator.name))]


def set_active(session: Session, name: str, active: bool) -> User:
    row = session.scalar(select(Annotator).where(Annotator.name == name))
    if row is None:
        raise UserError(f"no user named {name!r} (see `codealign users list`)")
    row.active = active
    return _as_user(row)


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The active user with this name and password, else None (wrong name, wrong password, disabled)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _password_hasher()
    row = session.scalar(select(Annotator).where(Annotator.name == name)) if name else None
    stored = row.password_hash if row is not None else _dummy_hash()
    try:
        hasher.verify(stored, password or "")
    except (VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    return _as_user(row)


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A real hash to verify against for unknown names, so timing does not reveal which names exist."""
    if not _DUMMY:
        _DUMMY.append(_password_hasher().hash("not-a-real-password"))
    return _DUMMY[0]


def require_user(session: Session, name: str | None, roles: tuple[str, ...] = ROLES) -> User:
    """The active user ``name`` holding one of ``roles``; :class:`PermissionDenied` otherwise."""
    if not name:
        raise PermissionDenied("not logged in")
    row = session.scalar(select(Annotator).where(Annotator.name == name))
    if row is None or not row.active:
        raise PermissionDenied(f"account {name!r} is unknown or disabled")
    if row.role not in roles:
        raise PermissionDenied(f"account {name!r} (role {row.role}) may not do this; needs {'/'.join(roles)}")
    return _as_user(row)
