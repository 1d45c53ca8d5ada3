"""The in-memory form of a task, shared by every suite loader and the importer. No torch, no DB.

The program under test is ``prompt + completion`` (HumanEval convention: the prompt holds the signature and
docstring, the completion continues with the indented body). Each entry of ``tests`` is a self-contained
snippet run after the program; partial credit is the share that pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "test", "pool")  # pool: prompts + tests without reference, for RL (docs/pipeline.md)


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    prompt: str
    entry_point: str
    tests: list[str]
    reference_solution: str | None = None
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        payload = json.dumps(
            [self.prompt, self.entry_point, self.tests, self.reference_solution, self.split],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()
