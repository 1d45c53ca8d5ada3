"""API keys (db.keys, `codealign keys`): stored hashed, shown once, verified, revoked from the next check on."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from alignment.cli import main
from codealign.errors import UserError
from db.keys import KeyRejected, create_key, list_keys, revoke_key, verify_key
from db.models import ApiKey


def test_a_new_key_verifies_and_only_its_hash_is_stored(db):
    with db.session() as session:
        info, key = create_key(session, "alice", created_by="test")
    with db.session() as session:
        assert verify_key(session, key).name == "alice"
        row = session.scalar(select(ApiKey))
        stored = [str(getattr(row, c.name)) for c in ApiKey.__table__.columns]
    assert key.startswith("ca-") and len(key) > 40
    assert all(key not in value for value in stored)  # not in any column, in any form
    assert key.startswith(info.prefix) and len(info.prefix) < len(key) // 3


def test_forged_malformed_and_missing_keys_are_rejected(db):
    with db.session() as session:
        _, key = create_key(session, "alice", created_by="test")
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    cases = {
        forged: "invalid",
        "sk-" + key[3:]: "invalid",
        key + " ": "invalid",
        "": "missing",
        None: "missing",
    }
    for candidate, reason in cases.items():
        with db.session() as session, pytest.raises(KeyRejected) as caught:
            verify_key(session, candidate)
        assert caught.value.reason == reason, candidate


def test_revoked_key_fails_and_keeps_its_name(db):
    with db.session() as session:
        _, key = create_key(session, "bot", created_by="test")
        _, other = create_key(session, "carol", created_by="test")
    with db.session() as session:
        assert revoke_key(session, "bot")[1] is True
        assert revoke_key(session, "bot")[1] is False  # twice: nothing changes
    with db.session() as session, pytest.raises(KeyRejected, match="'bot' was revoked") as caught:
        verify_key(session, key)
    assert caught.value.reason == "revoked"
    with db.session() as session:
        assert verify_key(session, other).name == "carol"  # the others are untouched
        states = {k.name: k.active for k in list_keys(session)}
        with pytest.raises(UserError, match="already exists \\(revoked\\)"):
            create_key(session, "bot", created_by="test")
    assert states == {"bot": False, "carol": True}


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 101, "é"])
def test_bad_key_names_are_refused(db, name):
    with db.session() as session, pytest.raises(UserError, match="key name"):
        create_key(session, name, created_by="test")


def test_revoking_an_unknown_name_is_a_user_error(db):
    with db.session() as session, pytest.raises(UserError, match="no API key named 'nobody'"):
        revoke_key(session, "nobody")


def test_cli_add_prints_the_key_alone_on_the_last_stdout_line(db_url, db, capsys):
    assert main(["--db", db_url, "keys", "add", "alice"]) == 0
    out = capsys.readouterr().out
    key = out.splitlines()[-1]
    assert out == key + "\n"  # `KEY=$(codealign keys add alice)` captures exactly the key
    with db.session() as session:
        assert verify_key(session, key).name == "alice"

    assert main(["--db", db_url, "keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "active" in listing and key[:10] in listing and key not in listing

    assert main(["--db", db_url, "keys", "revoke", "alice"]) == 0
    assert "revoked" in capsys.readouterr().out
    with db.session() as session, pytest.raises(KeyRejected):
        verify_key(session, key)
    assert main(["--db", db_url, "keys", "list"]) == 0
    assert "revoked 20" in capsys.readouterr().out


def test_cli_errors_are_one_line(db_url, capsys):
    assert main(["--db", db_url, "keys", "add", "alice"]) == 0
    capsys.readouterr()
    assert main(["--db", db_url, "keys", "add", "alice"]) == 2
    assert main(["--db", db_url, "keys", "revoke", "bob"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "codealign: error: an API key named 'alice' already exists (active); choose another name",
        "codealign: error: no API key named 'bob' (see `codealign keys list`)",
    ]
