"""The in-memory form of a task, shared by every suite loader and the importer. No torch, no DB.

The program under test is ``prompt + completion`` (HumanEval convention: the prompt holds the signature and
docstring, the completion continues with the indented body). Each entry of ``tests`` is a self-contained
snippet run after the program; partial credit is the share that pass.

A chat task (:mod:`codealign.tasks.chat`) has ``messages`` instead: the model answers the conversation, the
program under test is the code of its answer, and ``prompt`` is the last user message (for people to read).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# pool: prompts + tests without reference, for RL (docs/pipeline.md); validation and prompt (few-shot
# examples): the published splits of benchmarks that have them (MBPP, codealign.tasks.mbpp)
SPLITS = ("train", "test", "pool", "validation", "prompt")


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    prompt: str
    entry_point: str
    tests: list[str]
    reference_solution: str | None = None
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] | None = None  # a chat task's conversation (TRL's conversational format)

    @property
    def chat(self) -> bool:
        return self.messages is not None

    @property
    def model_prompt(self) -> str | list[dict[str, str]]:
        """What the model is given: the conversation of a chat task, else the prompt text."""
        return self.messages if self.messages is not None else self.prompt

    def content_hash(self) -> str:
        fields: list[Any] = [self.prompt, self.entry_point, self.tests, self.reference_solution, self.split]
        if self.messages is not None:  # completion tasks keep the hash they had before chat tasks existed
            fields.append(self.messages)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
