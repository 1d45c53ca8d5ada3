"""``codealign db upgrade|downgrade|current``: create, migrate and inspect the database schema."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="create the database or migrate it to the latest schema")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(run=_upgrade)
    down = sub.add_parser("downgrade", help="migrate the schema back (default: one revision)")
    down.add_argument("--revision", default="-1", help="target revision, e.g. -1 or base (drops everything)")
    down.set_defaults(run=_downgrade)
    cur = sub.add_parser("current", help="show the database URL and its schema revision")
    cur.set_defaults(run=_current)


def _print(state) -> None:
    from db.session import redact

    note = "up to date" if state.up_to_date else f"head is {state.head}"
    print(f"{redact(state.url)}: revision {state.current or '(empty)'} ({note})")


def _upgrade(args: argparse.Namespace, db) -> int:
    from db import migrate

    _print(migrate.upgrade(db, revision=args.revision))
    return 0


def _downgrade(args: argparse.Namespace, db) -> int:
    from db import migrate

    _print(migrate.downgrade(db, revision=args.revision))
    return 0


def _current(args: argparse.Namespace, db) -> int:
    from db import migrate

    _print(migrate.current(db))
    return 0
