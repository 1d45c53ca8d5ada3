"""Accounts: argon2 hashes, roles, disable, login checks, and the `codealign users` CLI."""

import re

import pytest

from alignment.cli import main
from annotation_ui.users import PermissionDenied, add_user, authenticate, list_users, require_user, set_active
from codealign.errors import UserError
from db.models import Annotator
from db.session import session_scope

GOOD = "amber-walrus-tide"


def test_password_is_stored_as_argon2id_and_checked(db_url):
    with session_scope(db_url) as s:
        add_user(s, "alice", "correct horse", "annotator", created_by="test")
    with session_scope(db_url) as s:
        row = s.query(Annotator).one()
        assert row.password_hash.startswith("$argon2id$") and "correct horse" not in row.password_hash
        assert authenticate(s, "alice", "correct horse").name == "alice"
        assert authenticate(s, "alice", "wrong password") is None
        assert authenticate(s, "nobody", "correct horse") is None
        assert authenticate(s, "", "") is None


@pytest.mark.parametrize(
    "name,password,role,message",
    [
        ("bad name!", "long enough", "annotator", "user name"),
        ("carol", "short", "annotator", "at least 10"),
        ("carol", "long enough", "root", "--role"),
    ],
)
def test_bad_account_input_is_one_clear_error(db_url, name, password, role, message):
    with session_scope(db_url) as s, pytest.raises(UserError, match=message):
        add_user(s, name, password, role, created_by="test")


@pytest.mark.parametrize(
    "password,message",
    [
        ("password", "at least 10 characters"),
        (" " * 8, "at least 10 characters"),
        (" " * 12, "must not be only spaces"),
        ("password123", "too easy to guess (this is a very common password)"),
        ("1234567890", "too easy to guess"),
        ("qwertyuiop", "too easy to guess"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("carol-carol-1", "too easy to guess"),  # the account's own name, repeated
    ],
)
def test_weak_passwords_are_refused_with_one_line(db_url, password, message):
    with session_scope(db_url) as s, pytest.raises(UserError, match=re.escape(message)) as refused:
        add_user(s, "carol", password, "annotator", created_by="test")
    assert "\n" not in str(refused.value) and str(refused.value).startswith("password: ")
    with session_scope(db_url) as s:
        assert s.query(Annotator).count() == 0


def test_cli_refuses_a_weak_password_and_accepts_a_passphrase(db_url, monkeypatch, capsys):
    monkeypatch.setenv("CODEALIGN_PASSWORD", "password")
    assert main(["--db", db_url, "users", "add", "erin"]) == 2
    err = capsys.readouterr().err
    assert "password: must be at least 10 characters" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("CODEALIGN_PASSWORD", "correct horse battery staple")
    assert main(["--db", db_url, "users", "add", "erin"]) == 0


def test_duplicate_and_disabled_users(db_url):
    with session_scope(db_url) as s:
        add_user(s, "bob", GOOD, "reviewer", created_by="test")
        with pytest.raises(UserError, match="already exists"):
            add_user(s, "bob", GOOD, "reviewer", created_by="test")
    with session_scope(db_url) as s:
        set_active(s, "bob", False)
    with session_scope(db_url) as s:
        assert authenticate(s, "bob", GOOD) is None
        with pytest.raises(PermissionDenied, match="disabled"):
            require_user(s, "bob")
        with pytest.raises(UserError, match="no user named"):
            set_active(s, "ghost", False)


def test_require_user_checks_role(db_url):
    with session_scope(db_url) as s:
        add_user(s, "ann", GOOD, "annotator", created_by="test")
        assert require_user(s, "ann").role == "annotator"
        with pytest.raises(PermissionDenied, match="needs admin"):
            require_user(s, "ann", ("admin",))
        with pytest.raises(PermissionDenied, match="not logged in"):
            require_user(s, None)


def test_users_cli_add_list_disable(db_url, monkeypatch, capsys):
    monkeypatch.setenv("CODEALIGN_PASSWORD", "s3cret-password")
    assert main(["--db", db_url, "users", "add", "dora", "--role", "admin"]) == 0
    assert main(["--db", db_url, "users", "add", "dora"]) == 2  # duplicate: one-line error, exit 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--db", db_url, "users", "disable", "dora"]) == 0
    assert main(["--db", db_url, "users", "list"]) == 0
    listing = capsys.readouterr().out
    assert "dora" in listing and "admin" in listing and " no" in listing
    with session_scope(db_url) as s:
        assert [u.active for u in list_users(s)] == [False]
        assert s.query(Annotator).one().created_by.startswith("cli:")


def test_users_cli_without_password_source_fails_cleanly(db_url, monkeypatch, capsys):
    monkeypatch.delenv("CODEALIGN_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["--db", db_url, "users", "add", "erin"]) == 2
    assert "CODEALIGN_PASSWORD" in capsys.readouterr().err
