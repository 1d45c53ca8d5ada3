"""``codealign report --out DIR``: the reviewer's HTML page (:mod:`alignment.report`), read from the database.

Examples::

    codealign report --out runs/report
    codealign --db sqlite:///team.db report --out /srv/www/codealign
"""

from __future__ import annotations


def register(parser) -> None:
    parser.add_argument("--out", required=True, help="directory for index.html and the PNG plots")
    parser.set_defaults(run=_report)


def _report(args, db) -> int:
    from alignment.report import write_report

    print(f"report written to {write_report(args.out, db)}")
    return 0
