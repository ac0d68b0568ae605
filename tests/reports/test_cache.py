"""ReportCache: single flight in-process and across replicas (a Redis lock), fail open,
the circuit breaker, no write-back after a failed read."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from ferry.cache.breaker import CircuitBreaker
from ferry.cache.memory import MemoryCache
from ferry.cache.redis import RedisCache, RedisSettings, _glob_escape
from ferry.cache.report_cache import ReportCache
from tests.reports.conftest import REDIS_URL, require_redis


class Counting:
    def __init__(self, delay: float = 0.2) -> None:
        self.calls = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self) -> bytes:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        return b"report"


def _together(n: int, fn: object) -> list[object]:
    out: list[object] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        out.append(fn())  # type: ignore[operator]

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_single_flight_in_process() -> None:
    cache = ReportCache(MemoryCache(max_entries=10), "memory", 60)
    compute = Counting()
    results = _together(8, lambda: cache.get_or_compute("student", "k", compute))
    assert compute.calls == 1
    assert all(r[0] == b"report" for r in results)  # type: ignore[index]
    assert cache.get_or_compute("student", "k", compute) == (b"report", True)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    require_redis()
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
    yield r
    r.close()


@pytest.mark.redis
def test_single_flight_across_replicas(redis_client: redis.Redis) -> None:
    settings = RedisSettings(key_prefix=f"ferry-test-{uuid.uuid4().hex}-")
    replicas = [
        ReportCache(RedisCache(None, redis_client, settings), "redis", 60, 5, 3) for _ in range(4)
    ]
    compute = Counting(0.3)
    calls = [lambda c=c: c.get_or_compute("student", "key", compute) for c in replicas]
    out: list[object] = []
    barrier = threading.Barrier(len(calls))

    def run(fn: object) -> None:
        barrier.wait()
        out.append(fn())  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compute.calls == 1  # one replica computed; the others waited on its lock
    assert sorted(cached for _, cached in out) == [False, True, True, True]  # type: ignore[misc]
    for k in redis_client.scan_iter(settings.key_prefix + "*"):
        redis_client.delete(k)


@pytest.mark.redis
def test_a_killed_lock_holder_blocks_no_longer_than_the_lock_timeout(
    redis_client: redis.Redis,
) -> None:
    settings = RedisSettings(key_prefix=f"ferry-test-{uuid.uuid4().hex}-")
    backend = RedisCache(None, redis_client, settings)
    dead = backend.lock("key", timeout=0.5, blocking_timeout=0)
    assert dead.acquire()  # held by a "pod" that is then killed: never released
    cache = ReportCache(backend, "redis", 60, lock_timeout=5, blocking_timeout=2)
    t = time.perf_counter()
    assert cache.get_or_compute("student", "key", Counting(0)) == (b"report", False)
    assert time.perf_counter() - t < 1.5  # the lock expired after 0.5 s
    for k in redis_client.scan_iter(settings.key_prefix + "*"):
        redis_client.delete(k)


class Broken:
    def __init__(self) -> None:
        self.calls = 0
        self.sets = 0

    def get(self, key: str) -> bytes | None:
        self.calls += 1
        raise ConnectionError("down")

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self.sets += 1

    def lock(self, key: str, timeout: float, blocking_timeout: float) -> None:
        return None

    def entries(self) -> int:
        raise ConnectionError("down")


def test_fail_open_breaker_and_no_write_back() -> None:
    backend = Broken()
    cache = ReportCache(backend, "broken", 60, breaker=CircuitBreaker("broken", 2, 0.2))
    for _ in range(10):
        assert cache.get_or_compute("student", "k", Counting(0)) == (b"report", False)
    assert backend.calls == 2  # then the breaker opened: no more calls
    assert backend.sets == 0  # never written after a failed read
    assert cache.stats.errors == 2 and cache.breaker.state == "open"
    time.sleep(0.25)
    assert cache.breaker.state == "half_open"
    cache.get_or_compute("student", "k", Counting(0))
    assert backend.calls == 3 and cache.breaker.state == "open"  # one trial, failed again
    assert cache.entries() == -1


def test_memory_cache_expires_and_bounds() -> None:
    m = MemoryCache(max_entries=2)
    m.set("a", b"1", 0.05)
    m.set("b", b"2", 60)
    m.set("c", b"3", 60)
    assert m.get("a") is None and m.entries() == 2
    assert m.get("b") == b"2"
    time.sleep(0.06)
    m.set("d", b"4", 0.01)
    time.sleep(0.02)
    assert m.get("d") is None


@pytest.mark.redis
def test_redis_entries_count_only_our_reports(redis_client: redis.Redis) -> None:
    """Issue 23, item 8: cache stats counted every key of the Redis database (DBSIZE:
    revocations, rate limits, locks, other apps); they count this cache's reports only."""
    tag = uuid.uuid4().hex[:8]
    settings = RedisSettings(key_prefix=f"ferry:report:t{tag}[*]:")  # glob characters too
    backend = RedisCache(None, redis_client, settings)
    others = [f"other:{tag}:{i}" for i in range(5)] + [f"ferry:report:t{tag}x:1"]
    try:
        for i in range(3):
            backend.set(f"student:{i}", b"r", 60)
        redis_client.set(f"{backend.prefix}lock:student:0", b"1", px=60_000)
        for key in others:
            redis_client.set(key, b"x", px=60_000)
        assert redis_client.dbsize() >= 10
        assert backend.entries() == 3
    finally:
        redis_client.delete(*others, *redis_client.keys(_glob_escape(backend.prefix) + "*"))
