"""Synthetic tasks, policies, completions and scores for demos, the load benchmark and tests.

Rows are marked ``created_by="sample:annotation_ui"`` and tasks use source ``"sample"``, so they never mix
with real suites. Completions are small but realistic Python bodies with varied verdicts, including one
whose text tries HTML/JS injection (the page must show it as text). Execution rows are made up (nothing
runs); static rows come from the real analyser (:func:`reward.static.analyze_batch`, as ``codealign score``
stores them), so cards show real findings.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.models import Completion, Execution, Policy, StaticScore, Task

ACTOR = "sample:annotation_ui"

_BODIES = [
    ("    return sum(xs)\n", "passed", None),
    ("    total = 0\n    for x in xs:\n        total += x\n    return total\n", "passed", None),
    (
        "    result = 0\n    i = 0\n    while i < len(xs):\n        result = result + xs[i]\n        i += 1\n    return result\n",
        "passed",
        None,
    ),
    ("    return sum([x for x in xs if x != None])\n", "passed", None),  # ruff E711
    ("    return xs[0] + xs[1]\n", "runtime_error", ("IndexError", 4)),
    ('    return eval("0")\n', "failed", ("AssertionError", 3)),  # bandit B307
    (
        '    s = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"\n    return len(s) and sum(xs)\n',
        "passed",
        None,
    ),
    ("    return sum(xs\n", "syntax_error", ("SyntaxError", 3)),
]


@dataclass
class SampleData:
    task_ids: list[int]
    policy_names: list[str]
    completions: int


def seed_sample_data(
    session: Session,
    *,
    tasks: int = 10,
    per_policy: int = 2,
    policies: tuple[str, ...] = ("sft", "dpo"),
    seed: int = 0,
) -> SampleData:
    """Add ``tasks`` test-split tasks; for each, ``per_policy`` scored completions from every policy."""
    rng = random.Random(seed)
    policy_rows = []
    for name in policies:
        row = Policy(
            name=name,
            checkpoint_path=f"runs/{name}",
            stage=name if name in ("sft", "dpo", "grpo") else "external",
            created_by=ACTOR,
        )
        session.add(row)
        policy_rows.append(row)
    session.flush()
    task_ids, n_completions, to_analyze = [], 0, []
    for t in range(tasks):
        prompt = f'def total_{t}(xs: list[int]) -> int:\n    """Return the sum of xs (task {t})."""\n'
        tests = [
            f"assert total_{t}([1, 2, 3]) == 6",
            f"assert total_{t}([]) == 0",
            f"assert total_{t}([5]) == 5",
        ]
        task = Task(
            task_id=f"sample/{t}",
            source="sample",
            split="test",
            prompt=prompt,
            entry_point=f"total_{t}",
            tests=tests,
            reference_solution=_BODIES[0][0],
            meta={},
            content_hash=hashlib.sha256(prompt.encode()).hexdigest(),
            created_by=ACTOR,
        )
        session.add(task)
        session.flush()
        task_ids.append(task.id)
        for policy in policy_rows:
            for index in range(per_policy):
                text, verdict, error = rng.choice(_BODIES)
                completion = Completion(
                    task_id=task.id,
                    policy_id=policy.id,
                    text=text,
                    sampling_params={"temperature": 0.8},
                    sampling_key="sample",
                    sample_index=index,
                    created_by=ACTOR,
                )
                session.add(completion)
                session.flush()
                passed = 3 if verdict == "passed" else rng.randint(0, 2)
                session.add(
                    Execution(
                        completion_id=completion.id,
                        verdict=verdict,
                        tests_passed=passed,
                        tests_total=3,
                        duration_s=0.01,
                        error_type=error[0] if error else None,
                        error_line=error[1] if error else None,
                        output="",
                        isolation="none",
                        created_by=ACTOR,
                    )
                )
                # Draws that once made up static scores: kept, so verdicts and item groups (and the figures
                # docs/annotation.md shows for this sample) stay what they always were.
                for _ in range(3):
                    rng.random()
                to_analyze.append((completion.id, prompt, text))
                n_completions += 1
    _add_static_scores(session, to_analyze)
    session.flush()
    return SampleData(task_ids=task_ids, policy_names=list(policies), completions=n_completions)


def _add_static_scores(session: Session, completions: list[tuple[int, str, str]]) -> None:
    """``StaticScore`` rows for ``(completion id, prompt, text)``, computed as ``codealign score`` does."""
    from reward.static import analyze_batch

    results = analyze_batch(
        [prompt + text for _, prompt, text in completions],
        score_from_line=[prompt.count("\n") + 1 for _, prompt, _ in completions],
        readability=True,
    )
    for (completion_id, _, _), static in zip(completions, results):
        session.add(
            StaticScore(
                completion_id=completion_id,
                syntax_ok=static.syntax_ok,
                scores=static.scores,
                findings=dict(static.findings, syntax_error=static.syntax_error),
                created_by=ACTOR,
            )
        )


def prepare_demo_db(
    db,
    *,
    accounts: dict[str, str],
    password: str,
    tasks: int = 8,
    per_policy: int = 2,
    k: int = 3,
    required_annotations: int = 2,
) -> int:
    """Migrate ``db`` (a ``Database``), add sample data, the ``accounts`` (name -> role) and ranking items; return items.

    One set-up for the app tests, the browser test, the load benchmark and the docs screenshots.
    """
    from annotation_ui.items import build_items
    from annotation_ui.users import add_user
    from db.migrate import upgrade

    upgrade(db)
    with db.session() as session:
        seed_sample_data(session, tasks=tasks, per_policy=per_policy)
        for name, role in accounts.items():
            add_user(session, name, password, role, created_by=ACTOR)
        return build_items(
            session,
            k=k,
            selection="execution_ties_first",
            required_annotations=required_annotations,
            seed=0,
            created_by=ACTOR,
        )


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (tests and benchmarks launch the app on it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
