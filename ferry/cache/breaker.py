"""A circuit breaker: after `failures` consecutive errors the backend is skipped for
`reset_seconds` (open); then one trial decides (half open): success closes it, failure
opens it for another `reset_seconds`.

With a `probe` (the backend's ping), the trial runs on a thread of its own and the caller
that started it waits at most `trial_wait` for the answer: a Redis that is back closes the
breaker for that very caller, while a dead or black-holed one (a host that never answers,
where each try takes the full socket timeout, retry included) costs that caller
`trial_wait` once per `reset_seconds`, and every other call nothing. Without a probe, the
caller's own backend call is the trial.

So a dead Redis costs next to nothing per request, and the cache comes back by itself
when Redis does."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ferry.cache.metrics import BREAKER_OPEN

log = logging.getLogger("ferry.cache")
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failures: int = 2,
        reset_seconds: float = 5.0,
        probe: Callable[[], object] | None = None,
        trial_wait: float = 0.01,
    ) -> None:
        self.name = name
        self.threshold = max(1, failures)
        self.reset_seconds = reset_seconds
        self.probe = probe
        self.trial_wait = trial_wait
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False  # a trial (the caller's call or the probe) is under way
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
        """Whether to call the backend now (in half open: after one trial, see above)."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == OPEN or self._trial:
                return False
            self._trial = True
            if self.probe is None:
                return True  # the caller's own call is the trial
            done = threading.Event()
            threading.Thread(
                target=self._run_probe, args=(self.probe, done), name="cache-probe", daemon=True
            ).start()
        done.wait(self.trial_wait)
        with self._lock:
            return self._state() == CLOSED

    def _run_probe(self, probe: Callable[[], object], done: threading.Event) -> None:
        try:
            probe()
        except Exception as e:
            log.info("report cache %s still down: %s", self.name, type(e).__name__)
            self.failure()
        else:
            self.success()
        finally:
            done.set()

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
