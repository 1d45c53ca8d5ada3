"""``codealign score``: writes Execution + StaticScore rows for completions that lack them; resumable."""

from __future__ import annotations

from sqlalchemy import func, select

from alignment.cli import main
from db.models import Completion, Execution, Policy, StaticScore, Task
from db.session import session_scope

PROMPT = "def add(a, b):\n"


def seed(url, texts, policy="p1"):
    with session_scope(url) as s:
        task = s.scalar(select(Task).where(Task.task_id == "t/0"))
        if task is None:
            task = Task(
                task_id="t/0",
                source="unit",
                split="test",
                prompt=PROMPT,
                entry_point="add",
                tests=["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
                meta={},
                content_hash="x",
                created_by="test",
            )
            s.add(task)
        pol = s.scalar(select(Policy).where(Policy.name == policy))
        if pol is None:
            pol = Policy(name=policy, checkpoint_path="/nowhere", stage="sft", created_by="test")
            s.add(pol)
        s.flush()
        start = s.scalar(select(func.count(Completion.id))) or 0
        for i, text in enumerate(texts):
            s.add(
                Completion(
                    task_id=task.id, policy_id=pol.id, text=text, sample_index=start + i, created_by="test"
                )
            )


def verdicts(url):
    with session_scope(url) as s:
        rows = s.execute(
            select(Completion.text, Execution.verdict, Execution.tests_passed, Execution.created_by).join(
                Execution
            )
        ).all()
        statics = s.scalar(select(func.count(StaticScore.id)))
    return {text: (v, passed, by) for text, v, passed, by in rows}, statics


def test_scores_missing_completions_and_resumes(db_url, capsys):
    seed(db_url, ["    return a + b\n", "    return a * b\n", "    return (\n"])
    assert main(["--db", db_url, "score", "--no-progress", "--timeout", "2"]) == 0
    assert "scored 3 executions" in capsys.readouterr().out
    rows, statics = verdicts(db_url)
    assert {t: v[:2] for t, v in rows.items()} == {
        "    return a + b\n": ("passed", 2),
        "    return a * b\n": ("failed", 1),
        "    return (\n": ("syntax_error", 0),
    }
    assert statics == 3 and all(by.startswith("cli:") for *_, by in rows.values())

    assert main(["--db", db_url, "score", "--no-progress"]) == 0
    assert "scored 0 executions" in capsys.readouterr().out

    seed(db_url, ["    return b + a\n"], policy="p2")
    assert main(["--db", db_url, "score", "--no-progress", "--policy", "p1"]) == 0
    assert "scored 0 executions" in capsys.readouterr().out
    assert main(["--db", db_url, "score", "--no-progress", "--policy", "p2", "--limit", "5"]) == 0
    assert "scored 1 executions" in capsys.readouterr().out
    with session_scope(db_url) as s:
        static = s.scalar(select(StaticScore).join(Completion).where(Completion.text == "    return (\n"))
        assert static.syntax_ok is False and static.findings["syntax_error"].startswith("SyntaxError")


def test_unknown_policy_and_bad_flags_are_one_line_errors(db_url, capsys):
    seed(db_url, ["    return a + b\n"])
    assert main(["--db", db_url, "score", "--policy", "nope"]) == 2
    assert "no policy named 'nope'" in capsys.readouterr().err
    assert main(["--db", db_url, "score", "--limit", "0"]) == 2
    assert "--limit must be positive" in capsys.readouterr().err


def test_degraded_isolation_warns_loudly_and_is_recorded(db_url, capsys, monkeypatch):
    from reward import pool as pool_module

    partial = pool_module.SandboxPool(1, isolate=False)
    monkeypatch.setattr(pool_module, "get_pool", lambda workers=None, **kw: partial.start())
    seed(db_url, ["    return a + b\n"])
    try:
        assert main(["--db", db_url, "score", "--no-progress"]) == 0
    finally:
        partial.close()
    assert "WARNING: sandbox isolation is PARTIAL" in capsys.readouterr().err
    with session_scope(db_url) as s:
        assert s.scalar(select(Execution.isolation)) == "partial"
