"""Per-key rate limits, requests and tokens per minute, through the ``limits`` library (no bucket of our own).

``limits`` gives the counting (a sliding-window counter by default: the previous minute's count weighted by
how much of it still overlaps the window, O(1) memory per key) and the storage (``memory://`` in this
process; ``redis://...`` and the others it supports when several servers share one budget). A request is
admitted only when both limits have room for it, and only then are both charged, so a refused request costs
nothing. ``Retry-After`` is the time until the window has room again, rounded up to whole seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from alignment.serve.config import RateLimitConfig
from alignment.serve.errors import ApiError, bad_request


@dataclass(frozen=True)
class Charge:
    tokens: int  # what the request may use: prompt tokens + n x max_tokens per prompt


class RateLimiter:
    def __init__(self, cfg: RateLimitConfig):
        from limits import RateLimitItemPerMinute
        from limits.storage import storage_from_string
        from limits.strategies import STRATEGIES

        self.cfg = cfg
        self._limiter = STRATEGIES[cfg.strategy](storage_from_string(cfg.storage_uri))
        self._requests = RateLimitItemPerMinute(cfg.requests_per_minute) if cfg.requests_per_minute else None
        self._tokens = RateLimitItemPerMinute(cfg.tokens_per_minute) if cfg.tokens_per_minute else None

    def admit(self, key_id: int, charge: Charge) -> None:
        """Charge one request and ``charge.tokens`` to the key, or raise a 429 (400 when it can never fit).

        Called from the event loop only, with no ``await`` between the tests and the hits, so two requests of
        one key cannot both pass the test on the last slot (with ``memory://``)."""
        ident = str(key_id)
        if self._tokens is not None and charge.tokens > self._tokens.amount:
            raise bad_request(
                f"this request may use {charge.tokens} tokens (prompt + n x max_tokens), more than this key's "
                f"limit of {self._tokens.amount} tokens per minute; lower max_tokens or n",
                param="max_tokens",
                code="request_too_large",
            )
        checks = [(self._requests, 1, "requests"), (self._tokens, charge.tokens, "tokens")]
        for item, cost, kind in checks:
            if item is not None and not self._limiter.test(item, ident, cost=cost):
                raise self._too_many(item, ident, kind)
        for item, cost, _ in checks:
            if item is not None:
                self._limiter.hit(item, ident, cost=cost)

    def _too_many(self, item, ident: str, kind: str) -> ApiError:
        stats = self._limiter.get_window_stats(item, ident)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        return ApiError(
            429,
            f"rate limit reached: {item.amount} {kind} per minute for this key; retry in {retry} s",
            type=kind,
            code="rate_limit_exceeded",
            headers={
                "Retry-After": str(retry),
                f"x-ratelimit-limit-{kind}": str(item.amount),
                f"x-ratelimit-remaining-{kind}": str(max(0, stats.remaining)),
            },
        )
