"""Rate limits shared across replicas through Redis, per process when Redis is not there.

One `Limiter` per kind of limit (login attempts, bulk reports, ...). It uses the `limits`
library's moving window on the app's shared Redis connection (short timeouts, at
most one retry). When Redis is not configured, or a call to it fails, the limiter answers
from an in-process counter instead (still limited, per process) and tries Redis again after
`retry_after_seconds`, so it recovers by itself without a restart.

A moving window keeps one timestamp per hit, so "at most N in any window" holds exactly,
also across the edge of a clock-aligned window, where the cheaper sliding-window counter
rounds the previous window's weighted count down and lets an extra login attempt through.
Ferry's limits are small (attempts per minute), so the per-hit entries cost little.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger("ferry.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Seconds until another hit would be allowed (0 when allowed).
    retry_after: float
    # "redis" or "memory": where the count was kept.
    backend: str


class Limiter:
    """At most `limit` hits in any `window_seconds` for each key (moving window)."""

    def __init__(
        self,
        name: str,
        limit: int,
        window_seconds: float,
        redis_client: Any = None,
        retry_after_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.item: RateLimitItem = RateLimitItemPerSecond(limit, max(1, math.ceil(window_seconds)))
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        if redis_client is not None:
            storage = RedisStorage(
                "redis://", connection_pool=redis_client.connection_pool, wrap_exceptions=True
            )
            self._redis = MovingWindowRateLimiter(storage)
        self._retry_after = retry_after_seconds
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _backend(self) -> tuple[MovingWindowRateLimiter, str]:
        if self._redis is not None and time.monotonic() >= self._down_until:
            return self._redis, "redis"
        return self._memory, "memory"

    def _redis_failed(self, e: Exception) -> None:
        with self._lock:
            if time.monotonic() >= self._down_until:
                log.warning(
                    "rate limit %s: Redis unavailable (%s); counting in this process for %gs",
                    self.name,
                    type(e).__name__,
                    self._retry_after,
                    extra={"event": "ratelimit_fallback"},
                )
            self._down_until = time.monotonic() + self._retry_after

    def hit(self, *key: str) -> Decision:
        """Count one hit for `key`; allowed or not, with the wait when not."""
        strategy, backend = self._backend()
        try:
            allowed = strategy.hit(self.item, self.name, *key)
            wait = 0.0
            if not allowed:
                reset = strategy.get_window_stats(self.item, self.name, *key).reset_time
                wait = max(1.0, reset - time.time())
        except Exception as e:  # Redis down or slow: never fail the call for a limit
            if backend != "redis":
                raise
            self._redis_failed(e)
            return self.hit(*key)
        return Decision(allowed, wait, backend)

    def test(self, *key: str) -> bool:
        """Whether a hit for `key` would be allowed now (counts nothing)."""
        strategy, backend = self._backend()
        try:
            return bool(strategy.test(self.item, self.name, *key))
        except Exception as e:
            if backend != "redis":
                raise
            self._redis_failed(e)
            return self.test(*key)

    def clear(self, *key: str) -> None:
        """Forget the hits of `key` (a successful login clears its failures)."""
        strategy, backend = self._backend()
        try:
            strategy.clear(self.item, self.name, *key)
        except Exception as e:
            if backend != "redis":
                raise
            self._redis_failed(e)
        if backend == "redis":
            self._memory.clear(self.item, self.name, *key)
