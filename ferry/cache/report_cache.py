"""ReportCache: cache-aside over a `ferry.caches` backend that never fails a report.

- Fail open: a backend error is counted, opens the breaker after a few, and the report
  is computed and served; after a failed read nothing is written back.
- Near: with `near_bytes`, what was read from or written to the backend is also kept in
  this process (a byte-bounded ferry.cache.memory.MemoryCache), so a hot entry costs no
  round trip; keys carry data versions, so it is never stale.
- Single flight: concurrent misses of one key compute once in this process (the others
  wait for that result), and across replicas the leader holds the backend's lock (lock
  timeout + blocking timeout) while it computes, re-reading the cache once it has it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ferry.cache import metrics
from ferry.cache.breaker import CircuitBreaker
from ferry.cache.memory import MemoryCache

log = logging.getLogger("ferry.cache")
READ_OK, READ_FAILED, READ_SKIPPED = "ok", "failed", "skipped"


@dataclass
class Stats:
    hits: int = 0
    misses: int = 0
    errors: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class ReportCache:
    def __init__(
        self,
        backend: Any,
        name: str,
        ttl_seconds: float,
        lock_timeout: float = 10.0,
        blocking_timeout: float = 2.0,
        breaker: CircuitBreaker | None = None,
        near_bytes: int = 0,
    ) -> None:
        self.backend = backend
        self.name = name
        self.ttl = ttl_seconds
        self.lock_timeout = lock_timeout
        self.blocking_timeout = blocking_timeout
        self.breaker = breaker or CircuitBreaker(name, probe=getattr(backend, "ping", None))
        self.stats = Stats()
        self.near = MemoryCache(max_bytes=near_bytes) if near_bytes > 0 else None
        self._stats_lock = threading.Lock()
        self._flights: dict[str, Future[tuple[bytes, bool]]] = {}
        self._flights_lock = threading.Lock()
        self._counters: dict[tuple[str, bool], Any] = {}

    # --- backend calls, each guarded ---------------------------------------------------

    def _error(self, op: str, e: BaseException) -> None:
        self.breaker.failure()
        metrics.ERRORS.labels(self.name, op).inc()
        with self._stats_lock:
            self.stats.errors += 1
        log.warning(
            "report cache %s %s failed: %s; serving without it",
            self.name,
            op,
            type(e).__name__,
            extra={"event": "cache_error"},
        )

    def _get(self, key: str) -> tuple[bytes | None, str]:
        """(value, READ_OK | READ_FAILED | READ_SKIPPED: the breaker said not now)."""
        if not self.breaker.allow():
            return None, READ_SKIPPED
        try:
            value = self.backend.get(key)
        except Exception as e:
            self._error("get", e)
            return None, READ_FAILED
        self.breaker.success()
        return value, READ_OK

    def _set(self, key: str, value: bytes) -> None:
        if not self.breaker.allow():
            return
        try:
            self.backend.set(key, value, self.ttl)
        except Exception as e:
            self._error("set", e)
            return
        self.breaker.success()

    def _lock(self, key: str) -> Any:
        if not self.breaker.allow():
            return None
        try:
            lock = self.backend.lock(key, self.lock_timeout, self.blocking_timeout)
            if lock is None:
                return None
            got = lock.acquire()
        except Exception as e:
            self._error("lock", e)
            return None
        self.breaker.success()
        return lock if got else None

    def _unlock(self, lock: Any) -> None:
        try:
            lock.release()
        except Exception as e:  # expired (we took longer than lock_timeout) or Redis gone
            log.info("report cache lock release failed: %s", type(e).__name__)

    # --- the one entry point -----------------------------------------------------------

    def get_or_compute(
        self, kind: str, key: str, compute: Callable[[], bytes]
    ) -> tuple[bytes, bool]:
        """(value, from cache). `compute` runs at most once per key at a time here."""
        near = self.near
        if near is not None:
            value = near.get(key)
            if value is not None:
                self._count(kind, hit=True)
                return value, True
        value, read = self._get(key)
        if value is not None:
            if near is not None:
                near.set(key, value, self.ttl)
            self._count(kind, hit=True)
            return value, True
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = Future()
                self._flights[key] = flight
        assert flight is not None
        if not leader:
            value, cached = flight.result()
            self._count(kind, hit=cached)
            return value, cached
        try:
            result = self._lead(kind, key, compute, read)
            if near is not None:
                near.set(key, result[0], self.ttl)
            flight.set_result(result)
            self._count(kind, hit=result[1])
            return result
        except BaseException as e:
            flight.set_exception(e)
            raise
        finally:
            with self._flights_lock:
                self._flights.pop(key, None)

    def _lead(
        self, kind: str, key: str, compute: Callable[[], bytes], read: str
    ) -> tuple[bytes, bool]:
        lock = self._lock(key) if read == READ_OK else None
        try:
            if lock is not None:  # another replica may have filled it while we waited
                value, read = self._get(key)
                if value is not None:
                    return value, True
            started = time.perf_counter()
            value = compute()
            metrics.COMPUTE.labels(kind).observe(time.perf_counter() - started)
            # Never write back after a failed read. After a skipped one (the breaker was
            # open, or its trial had not answered yet), _set asks the breaker again: a
            # Redis whose trial succeeded meanwhile gets the entry, an open one nothing.
            if read != READ_FAILED:
                self._set(key, value)
            return value, False
        finally:
            if lock is not None:
                self._unlock(lock)

    def _count(self, kind: str, hit: bool) -> None:
        counter = self._counters.get((kind, hit))
        if counter is None:  # labels() takes a lock and builds a tuple: once per kind
            counter = (metrics.HITS if hit else metrics.MISSES).labels(kind)
            self._counters[(kind, hit)] = counter
        counter.inc()
        with self._stats_lock:
            if hit:
                self.stats.hits += 1
            else:
                self.stats.misses += 1

    def entries(self) -> int:
        if not self.breaker.allow():
            return -1
        try:
            n = int(self.backend.entries())
        except Exception as e:
            self._error("entries", e)
            return -1
        self.breaker.success()
        return n
