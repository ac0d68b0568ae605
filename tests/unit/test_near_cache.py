"""The near cache (a MemoryCache bounded by bytes): least recently used goes, entries
expire with the TTL, and nothing is kept that would crowd out many reports."""

from __future__ import annotations

import time

from ferry.cache.memory import MemoryCache
from ferry.cache.report_cache import ReportCache


def test_bytes_bound_evicts_the_least_recently_used() -> None:
    near = MemoryCache(max_bytes=400)
    for k in "abc":
        near.set(k, bytes(99), 60)  # 100 bytes each with its key
    assert near.get("a") == bytes(99)  # a is now the most recent
    near.set("d", bytes(99), 60)
    near.set("e", bytes(99), 60)  # 500 > 400: b goes (the oldest), then nothing else
    assert [k for k in "abcde" if near.get(k) is not None] == ["a", "c", "d", "e"]
    assert near.bytes == 400
    near.set("big", bytes(101), 60)  # over a quarter of the room: not kept
    assert near.get("big") is None and near.entries() == 4


def test_entries_expire_with_the_ttl() -> None:
    near = MemoryCache(max_bytes=1000)
    near.set("k", b"v", 0.05)
    assert near.get("k") == b"v"
    time.sleep(0.08)
    assert near.get("k") is None and near.bytes == 0


class Backend:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.gets = 0

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self.data[key] = value

    def lock(self, key: str, timeout: float, blocking_timeout: float) -> None:
        return None


def test_a_near_hit_asks_the_backend_nothing() -> None:
    backend = Backend()
    cache = ReportCache(backend, "shared", 60, near_bytes=1 << 20)
    assert cache.get_or_compute("student", "k1", lambda: b"report") == (b"report", False)
    assert backend.data == {"k1": b"report"}  # written through to the shared backend
    gets = backend.gets
    assert cache.get_or_compute("student", "k1", lambda: b"other") == (b"report", True)
    assert backend.gets == gets  # served from this process
    other = ReportCache(backend, "shared", 60, near_bytes=1 << 20)  # another replica
    assert other.get_or_compute("student", "k1", lambda: b"other") == (b"report", True)
    assert other.near is not None and other.near.get("k1") == b"report"  # kept from Redis
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    off = ReportCache(backend, "shared", 60)  # near_bytes=0: off, every read asks
    assert off.near is None
