"""The in-process report cache (`ferry.caches` plugin `memory`): a bounded LRU with
expiry, for a laptop or a single replica. Settings: plugins.caches.memory.

The same class is the near cache in front of a shared backend (ReportCache's
`near_bytes`), bounded by bytes as well: then an entry larger than a quarter of the room
(a bulk ZIP) is not kept, since it would push out many reports."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, ClassVar

from pydantic import Field

from ferry.config import Strict


class MemorySettings(Strict):
    max_entries: int = Field(10_000, ge=1)


class MemoryCache:
    name = "memory"
    settings_model: ClassVar[type[Strict]] = MemorySettings

    def __init__(
        self, app: Any = None, max_entries: int | None = None, max_bytes: int = 0
    ) -> None:
        s = app.plugin_settings("ferry.caches", "memory") if app is not None else MemorySettings()
        self.max_entries = max_entries or s.max_entries
        self.max_bytes = max_bytes  # 0: no bound on bytes
        self.bytes = 0  # keys and values held
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= now:
                self._drop(key)
                return None
            self._data.move_to_end(key)
            return item[1]

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        size = len(key) + len(value)
        if self.max_bytes and size > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._data:
                self._drop(key)
            self._data[key] = (time.monotonic() + ttl_seconds, value)
            self.bytes += size
            while len(self._data) > self.max_entries or (
                self.max_bytes and self.bytes > self.max_bytes
            ):
                self._drop(next(iter(self._data)))

    def _drop(self, key: str) -> None:
        _, value = self._data.pop(key)
        self.bytes -= len(key) + len(value)

    def entries(self) -> int:
        with self._lock:
            return len(self._data)

    def ping(self) -> None:
        return None

    def lock(self, key: str, timeout: float, blocking_timeout: float) -> None:
        """No cross-process lock: the in-process single flight is all a memory cache needs."""
        return None

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0
