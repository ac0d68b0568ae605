"""A circuit breaker: after `failures` consecutive errors the backend is skipped for
`reset_seconds` (open), then one call is let through (half open); success closes it.

A dead Redis therefore costs one timed-out call per `reset_seconds`, not one per request,
and the cache comes back by itself when Redis does."""

from __future__ import annotations

import threading
import time

from ferry.cache.metrics import BREAKER_OPEN

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, name: str, failures: int = 2, reset_seconds: float = 5.0) -> None:
        self.name = name
        self.threshold = max(1, failures)
        self.reset_seconds = reset_seconds
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if time.monotonic() - self._opened_at >= self.reset_seconds:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool:
        """Whether to call the backend now (in half open: one caller at a time)."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == HALF_OPEN and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                BREAKER_OPEN.labels(self.name).set(0)
            self._failures, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = time.monotonic()
                BREAKER_OPEN.labels(self.name).set(1)
