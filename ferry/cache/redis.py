"""The shared report cache on Redis (`ferry.caches` plugin `redis`).

It uses the app's Redis connection (core section `redis:`: short socket and connect
timeouts, at most one retry), so a dead or slow Redis costs a fraction of a second, and
the circuit breaker in front of it stops calls after `breaker_failures` of them failed;
its trial is a PING on a thread of its own, once per `breaker_reset_seconds`. Every
failure is swallowed here and counted: the caller computes the report instead.
Settings: plugins.caches.redis.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import Field

from ferry.config import Strict

log = logging.getLogger("ferry.cache")


class RedisSettings(Strict):
    key_prefix: str = "ferry:report:"
    # Consecutive failures that open the breaker, and how long it stays open.
    breaker_failures: int = Field(2, ge=1)
    breaker_reset_seconds: float = Field(5.0, gt=0)
    # The open breaker's trial (a PING on a thread of its own): the call that starts it
    # waits at most this long for the answer, then goes on without the cache.
    breaker_trial_wait_seconds: float = Field(0.01, ge=0, le=5)


class RedisCache:
    name = "redis"
    settings_model: ClassVar[type[Strict]] = RedisSettings

    def __init__(self, app: Any, client: Any = None, settings: RedisSettings | None = None):
        self.settings: RedisSettings = settings or app.plugin_settings("ferry.caches", "redis")
        self.client = client if client is not None else app.redis()
        if self.client is None:
            from ferry.plugins import PluginError

            raise PluginError("plugins.caches.redis needs a Redis: set redis.url")
        self.prefix = self.settings.key_prefix

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent; raises when Redis fails (the caller counts it)."""
        value = self.client.get(self.prefix + key)
        return bytes(value) if value is not None else None

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self.client.set(self.prefix + key, value, px=max(1, int(ttl_seconds * 1000)))

    def ping(self) -> None:
        """The breaker's trial: raises while Redis does not answer."""
        self.client.ping()

    def entries(self) -> int:
        """The reports cached under our prefix (not the locks beside them, nor any other
        key of the database: DBSIZE counted revocations, rate limits and other apps' keys
        too). A SCAN over the prefix: GetCacheStats is an operator's call, not a hot path."""
        match = _glob_escape(self.prefix) + "*"
        locks = (self.prefix + "lock:").encode()
        n = 0
        for key in self.client.scan_iter(match=match, count=1000):
            raw = key if isinstance(key, bytes) else str(key).encode()
            if not raw.startswith(locks):
                n += 1
        return n

    def lock(self, key: str, timeout: float, blocking_timeout: float) -> Any:
        """A Redis lock that expires after `timeout` (a killed holder never blocks others
        for longer) and waits at most `blocking_timeout` for its holder."""
        return self.client.lock(
            self.prefix + "lock:" + key,
            timeout=timeout,
            blocking_timeout=blocking_timeout,
            thread_local=False,
        )

    def close(self) -> None:
        return None  # the connection belongs to the app


def _glob_escape(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
