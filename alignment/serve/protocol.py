"""The body of ``POST /v1/completions`` and the shape of its answer (OpenAI's legacy completions API).

Supported: ``model``, ``prompt`` (a string or a list of strings), ``max_tokens``, ``temperature``, ``top_p``,
``n``, ``stop``, ``seed``, ``user`` (ignored), and our ``verify``. OpenAI parameters this server does not
implement (``stream``, ``logprobs``, ``echo``, ``best_of``, ``suffix``, ``logit_bias``, the penalties) are
refused with a 400 naming them when set to anything but their neutral value, rather than silently ignored;
an unknown key is a 400 as at OpenAI. The caps of :class:`~alignment.serve.config.RequestCaps` are checked by
the app (they come from the config).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# parameter -> its neutral value: anything else is refused (see the module docstring)
UNSUPPORTED = {
    "stream": False,
    "stream_options": None,
    "logprobs": None,
    "echo": False,
    "best_of": None,
    "suffix": None,
    "logit_bias": None,
    "presence_penalty": 0,
    "frequency_penalty": 0,
}


class Verify(BaseModel):
    """Run each completion (``prompt + text``) against ``tests``, or against a task's tests by ``task_id``."""

    model_config = ConfigDict(extra="forbid")

    tests: list[str] | None = None
    task_id: str | None = None
    source: str | None = None  # the task's suite, when the id exists in several

    @model_validator(mode="after")
    def _one_of(self) -> Verify:
        if (self.tests is None) == (self.task_id is None):
            raise ValueError("give exactly one of 'tests' (a list of snippets) or 'task_id'")
        if self.tests is not None and not self.tests:
            raise ValueError("'tests' is empty: nothing to verify")
        if self.source is not None and self.task_id is None:
            raise ValueError("'source' goes with 'task_id'")
        return self


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str | list[str] | list[int] | list[list[int]] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    verify: Verify | None = None
    stream: bool | None = None
    stream_options: Any = None
    logprobs: int | None = None
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @field_validator("prompt")
    @classmethod
    def _text_prompts(cls, value):
        if isinstance(value, list) and any(not isinstance(p, str) for p in value):
            raise ValueError("token-id prompts are not supported; send the prompt as text")
        if isinstance(value, list) and not value:
            raise ValueError("the list of prompts is empty")
        if value == "" or (isinstance(value, list) and "" in value):
            raise ValueError("a prompt must not be empty (a completion continues a prompt)")
        return value

    @field_validator("stop")
    @classmethod
    def _stop(cls, value):
        stops = [value] if isinstance(value, str) else value
        if stops is not None and any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    def unsupported(self) -> str | None:
        """The first OpenAI parameter set to something this server does not do, if any."""
        for name, neutral in UNSUPPORTED.items():
            value = getattr(self, name)
            if value is not None and value != neutral:
                return name
        return None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt or [])

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
