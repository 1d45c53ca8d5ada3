"""``codealign users add|list|disable|enable``: annotator, reviewer and admin accounts.

Examples::

    CODEALIGN_PASSWORD=... codealign users add alice --role annotator
    codealign users add bob --role admin          # prompts for the password twice
    codealign users list
    codealign users disable alice
"""

from __future__ import annotations

import argparse
import os
import sys

from codealign.errors import UserError

PASSWORD_ENV = "CODEALIGN_PASSWORD"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account (password from $CODEALIGN_PASSWORD or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", choices=["annotator", "reviewer", "admin"], default="annotator")
    add.add_argument(
        "--password-env", default=PASSWORD_ENV, help=f"env var holding the password (default {PASSWORD_ENV})"
    )
    add.set_defaults(run=_add)
    lst = sub.add_parser("list", help="list accounts")
    lst.set_defaults(run=_list)
    for action, help_text in (
        ("disable", "block an account (keeps its annotations)"),
        ("enable", "unblock an account"),
    ):
        p = sub.add_parser(action, help=help_text)
        p.add_argument("name")
        p.set_defaults(run=_set_active, active=action == "enable")


def read_password(env_var: str) -> str:
    """The password from ``env_var``, else from a no-echo prompt (asked twice); never from argv."""
    value = os.environ.get(env_var)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UserError(f"no password: set ${env_var} or run in a terminal to be prompted")
    import getpass

    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise UserError("passwords do not match")
    return first


def _add(args, db) -> int:
    from annotation_ui.users import add_user
    from codealign.provenance import cli_actor

    password = read_password(args.password_env)
    with db.session() as session:
        user = add_user(session, args.name, password, args.role, created_by=cli_actor())
    print(f"created {user.role} {user.name!r}")
    return 0


def _list(args, db) -> int:
    from annotation_ui.users import list_users

    with db.session() as session:
        users = list_users(session)
    print(f"{'name':<24} {'role':<10} active")
    for user in users:
        print(f"{user.name:<24} {user.role:<10} {'yes' if user.active else 'no'}")
    return 0


def _set_active(args, db) -> int:
    from annotation_ui.users import set_active

    with db.session() as session:
        user = set_active(session, args.name, args.active)
    print(f"{user.name!r} is now {'enabled' if user.active else 'disabled'}")
    return 0
