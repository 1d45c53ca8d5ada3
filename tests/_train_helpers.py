"""Shared set-up for the training-stage tests: a DB holding tasks with scored completions.

Executions are written directly (no sandbox): these tests check how stages *use* scores, while the reward
engine's tests check how scores are made.
"""

from __future__ import annotations

from pathlib import Path

from codealign.tasks.basic import generate_suite
from db.models import Completion, Execution, Policy, Task
from db.session import session_scope
from db.tasks import import_tasks

# (text suffix, tests passed out of 5): a full pass, a partial pass, a total failure per task
VARIANTS = (("", 5), ("    x = x\n", 3), (None, 0))


def add_scored_completion(session, task, policy, text: str, index: int, passed: int, total: int) -> None:
    """One completion of ``task`` by ``policy`` with its execution: ``passed`` of ``total`` tests."""
    completion = Completion(
        task_id=task.id, policy_id=policy.id, text=text, sample_index=index, created_by="run:0"
    )
    session.add(completion)
    session.flush()
    verdict = "passed" if passed == total else "failed"
    session.add(
        Execution(
            completion_id=completion.id,
            verdict=verdict,
            tests_passed=passed,
            tests_total=total,
            isolation="none",
            created_by="run:0",
        )
    )


def seed_scored_tasks(db_url: str, n_tasks: int = 12, splits=("train",)) -> list[str]:
    """Import the first ``n_tasks`` basic tasks per split and give each three scored completions."""
    suite = generate_suite(0)
    specs = [t for split in splits for t in [s for s in suite if s.split == split][:n_tasks]]
    with session_scope(db_url) as session:
        import_tasks(session, specs, "basic", "cli:test@host")
        policy = Policy(
            name="sampler", checkpoint_path="/nonexistent/sampler", stage="sft", created_by="cli:test"
        )
        session.add(policy)
        session.flush()
        for task in session.query(Task).order_by(Task.id):
            for index, (suffix, passed) in enumerate(VARIANTS):
                if suffix is None:
                    text = "    return None\n"
                else:
                    # a harmless extra statement keeps partial/full texts distinct
                    text = suffix + (task.reference_solution or "    return None\n")
                add_scored_completion(session, task, policy, text, index, passed, 5)
    return [s.task_id for s in specs]


def max_weight_change(a_dir: str | Path, b_dir: str | Path) -> float:
    """Largest absolute difference between same-named tensors of two saved models (they must share names)."""
    from safetensors.torch import load_file

    a = load_file(str(Path(a_dir) / "model.safetensors"))
    b = load_file(str(Path(b_dir) / "model.safetensors"))
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())[:5]
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# Settings that make every stage take a couple of seconds on the test-preset model.
TINY_RUN = {
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": ["none"],
    "max_length": 256,
}
