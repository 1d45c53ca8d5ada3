"""Chat-format tasks: a prompt given as messages (TRL's conversational format), and the one code extractor.

A task is either a *completion* task (``prompt`` is code: signature + docstring; the program under test is
``prompt + completion``) or a *chat* task (``messages``: ``[{"role": "system"|"user"|"assistant", "content":
str}, ...]``, ending with a user turn; the model answers in prose and code, and the program under test is the
code of the answer). :func:`program` is the one place either program is formed, and :func:`extract_code` the
one place code is taken out of an answer: the sandbox, the reward callables, evaluation, scoring and the
annotation app all call them.

In the database a chat task's messages live in ``Task.meta["messages"]`` (no schema change; the key is
reserved) and its ``prompt`` column holds the last user message, what an annotator reads.

No torch, no DB: the foundation layer.
"""

from __future__ import annotations

import re
from typing import Any

from codealign.errors import UserError

MESSAGES_KEY = "messages"  # Task.meta key holding a chat task's conversation
ROLES = ("system", "user", "assistant")

# A fenced block: its language tag and body. Blocks are read in order, each up to its closing fence, so a
# closing fence is never taken for the opening of a block; an unclosed fence (the answer ran out of tokens)
# runs to the end of the answer.
_BLOCK = re.compile(r"```[ \t]*([^\s`]*)[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "python3", "py", "py3"}


def is_conversation(value: Any) -> bool:
    """True for a list of ``{"role", "content"}`` dicts (TRL's conversational format)."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def check_messages(value: Any, where: str) -> list[dict[str, str]]:
    """``value`` as a validated conversation ending with a user turn; a one-line :class:`UserError` else."""
    if not is_conversation(value):
        raise UserError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    messages = []
    for i, message in enumerate(value):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise UserError(f"{where}: messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise UserError(f"{where}: messages[{i}].content must be a non-empty string")
        if set(message) - {"role", "content"}:
            raise UserError(f"{where}: messages[{i}] may only have 'role' and 'content'")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise UserError(f"{where}: the last message must be the user's (the model answers it)")
    return messages


def display_prompt(messages: list[dict[str, str]]) -> str:
    """What a person reads as the task: the last user message."""
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def task_messages(meta: dict[str, Any] | None) -> list[dict[str, str]] | None:
    """A stored task's conversation (``Task.meta["messages"]``), or None for a completion task."""
    messages = (meta or {}).get(MESSAGES_KEY)
    return messages if is_conversation(messages) else None


def reply_text(completion: Any) -> str:
    """An answer as text: the string itself, or the content of the last message of a TRL completion."""
    if isinstance(completion, str):
        return completion
    if is_conversation(completion):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    raise UserError(f"expected a string or a list of chat messages, got {type(completion).__name__}")


def extract_code(answer: str) -> str:
    """The code of a chat answer: its first ```python (or bare ```) fence, else the first fence of any
    language, else the whole answer (a bare-code reply)."""
    blocks = [(tag.lower(), body) for tag, body in _BLOCK.findall(answer)]
    for tag, body in blocks:
        if tag in _PYTHON_TAGS:
            return body
    return blocks[0][1] if blocks else answer


def program(prompt: str, completion: str, chat: bool) -> str:
    """The program under test: ``prompt + completion`` for a completion task, the answer's code for chat."""
    return extract_code(completion) if chat else prompt + completion
