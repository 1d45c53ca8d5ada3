"""What ``codealign serve`` runs with: one dataclass, loaded from ``configs/serve.yaml`` + flags + overrides.

Every bound the server enforces is here (body size, ``max_tokens``, ``n``, prompts per request, pending
requests), with the rate limits per key and the batching knobs, so an operator reads one file to know what a
client may do. This module imports no torch and no web framework (it is on the ``--help`` path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from alignment.generation import SamplingParams
from codealign.errors import UserError


@dataclass
class RateLimitConfig:
    """Per API key, over a sliding minute (``limits``' sliding-window counter). ``None``: no limit.

    Tokens are charged when a request is admitted, at what it may use: its prompt tokens plus ``n`` x
    ``max_tokens`` per prompt (OpenAI counts the same way), so a burst cannot overrun the budget."""

    requests_per_minute: int | None = 600
    tokens_per_minute: int | None = 200_000
    strategy: Literal["sliding-window-counter", "moving-window", "fixed-window"] = "sliding-window-counter"
    storage_uri: str = "memory://"  # a `limits` storage URI; memory:// is per server process

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"limits.{name} must be positive (or null for no limit), got {value}")


@dataclass
class RequestCaps:
    """The most one request may ask for; beyond it the answer is a 400 (413 for the body)."""

    max_body_bytes: int = 256 * 1024
    max_tokens: int = 512  # per completion
    default_max_tokens: int = SamplingParams.max_new_tokens  # when the request names none
    max_n: int = 16
    max_prompts: int = 16  # a list prompt
    max_stop: int = 4  # stop sequences, as OpenAI allows

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_tokens",
            "default_max_tokens",
            "max_n",
            "max_prompts",
            "max_stop",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"requests.{name} must be positive, got {getattr(self, name)}")
        if self.default_max_tokens > self.max_tokens:
            raise UserError(
                f"requests.default_max_tokens ({self.default_max_tokens}) exceeds requests.max_tokens "
                f"({self.max_tokens})"
            )


@dataclass
class BatchingConfig:
    """Dynamic batching: the first waiting request opens a window of ``wait_ms``; every compatible request
    that arrives in it (up to ``max_batch_size`` sequences) shares one ``generate`` call."""

    max_batch_size: int = 32  # sequences per generate call; 1 = one request at a time
    wait_ms: float = 5.0
    max_pending: int = 256  # requests queued or generating; beyond it new ones get 503 + Retry-After

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_pending < 1:
            raise UserError("batching.max_batch_size and batching.max_pending must be positive")
        if self.wait_ms < 0:
            raise UserError(f"batching.wait_ms must be >= 0, got {self.wait_ms}")


@dataclass
class VerifyConfig:
    """``"verify"`` in a request: its completions run in the sandbox (:mod:`reward.pool`)."""

    enabled: bool = True
    timeout_s: float = 5.0  # per completion
    memory_mb: int = 512
    max_tests: int = 64
    workers: int | None = None  # sandbox workers (None: CPU count + 1)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.memory_mb < 1 or self.max_tests < 1:
            raise UserError("verify.timeout_s, verify.memory_mb and verify.max_tests must be positive")


@dataclass
class ServeConfig:
    policy: str | None = None  # a registered policy name or a model directory
    model_name: str | None = None  # the id clients send as "model" (default: the policy's name)
    host: str = "127.0.0.1"
    port: int = 8000
    quantize: Literal["none", "int8"] = "none"  # int8: torch dynamic quantization of Linear layers (CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Intra-op threads of torch. None: CPU count - 1, leaving a core to the HTTP side; on a 2-core machine
    # torch's default (2) makes its spinning threads fight the event loop and generation slows down many times.
    torch_threads: int | None = None
    temperature: float = SamplingParams.temperature  # when a request names none
    top_p: float = SamplingParams.top_p
    limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    requests: RequestCaps = field(default_factory=RequestCaps)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise UserError(f"--port must be in 0..65535, got {self.port}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise UserError(f"torch_threads must be positive, got {self.torch_threads}")
        if self.quantize == "int8" and self.device == "cuda":
            raise UserError("--quantize int8 is CPU serving (torch's dynamic quantization); use --device cpu")
        SamplingParams(self.temperature, self.top_p)  # the one place sampling values are checked

    def threads(self) -> int:
        return self.torch_threads or max(1, (os.cpu_count() or 2) - 1)
