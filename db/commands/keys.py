"""``codealign keys add|list|revoke``: API keys of ``codealign serve`` (:mod:`db.keys`).

Examples::

    codealign keys add alice          # prints the new key alone on stdout's last line: KEY=$(codealign keys add alice)
    codealign keys list
    codealign keys revoke alice       # refused from the next request on
"""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create a key; it is printed once, alone on the last line of stdout")
    add.add_argument("name", help="who or what the key is for (letters, digits, '_', '.', '-')")
    add.set_defaults(run=_add)
    lst = sub.add_parser(
        "list", help="list keys (name, prefix, created, state); keys themselves are not stored"
    )
    lst.set_defaults(run=_list)
    rev = sub.add_parser("revoke", help="refuse a key from the next request on (its name stays taken)")
    rev.add_argument("name")
    rev.set_defaults(run=_revoke)


def _add(args: argparse.Namespace, db) -> int:
    from codealign.provenance import cli_actor
    from db.keys import create_key

    with db.session() as session:
        info, key = create_key(session, args.name, created_by=cli_actor())
    # The note goes to stderr so that stdout is the key alone: KEY=$(codealign keys add NAME) captures it.
    print(
        f"created API key {info.name!r} ({info.prefix}...); it is not stored, keep it now:", file=sys.stderr
    )
    print(key)
    return 0


def _list(args: argparse.Namespace, db) -> int:
    from db.keys import list_keys

    with db.session() as session:
        keys = list_keys(session)
    print(f"{'name':<24} {'prefix':<14} {'created (UTC)':<20} state")
    for k in keys:
        state = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}"
        print(f"{k.name:<24} {k.prefix + '...':<14} {k.created_at:%Y-%m-%d %H:%M}     {state}")
    if not keys:
        print("(no keys yet: `codealign keys add NAME`)", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace, db) -> int:
    from db.keys import revoke_key

    with db.session() as session:
        info, changed = revoke_key(session, args.name)
    print(
        f"API key {info.name!r} "
        + ("revoked" if changed else f"was already revoked at {info.revoked_at:%Y-%m-%d %H:%M} UTC")
    )
    return 0
