"""NearCache: the entries of a shared cache (Redis) this process read or wrote lately,
kept here too, so a hot report is a dictionary lookup instead of a Redis round trip.

It can never serve a stale report: a report's key carries the data versions read from
the database on every call (ferry.reports.versions), so an import anywhere changes the
key, and the old entry is never asked for again; it ages out. Bounded by bytes (least
recently used goes first) and by the cache's TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class NearCache:
    def __init__(self, max_bytes: int, ttl_seconds: float) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds
        self.bytes = 0
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= time.monotonic():
                self._drop(key)
                return None
            self._data.move_to_end(key)
            return item[1]

    def put(self, key: str, value: bytes) -> None:
        size = len(key) + len(value)
        if size > self.max_bytes // 4:  # a bulk ZIP is not worth the room of many reports
            return
        with self._lock:
            if key in self._data:
                self._drop(key)
            self._data[key] = (time.monotonic() + self.ttl, value)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self._data)))

    def _drop(self, key: str) -> None:
        _, value = self._data.pop(key)
        self.bytes -= len(key) + len(value)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
