"""Revoked tokens, as every service's auth filter knows them.

The auth service marks a token revoked in the database (the record of truth) and, when
Redis is configured, adds its jti to a sorted set scored by the token's expiry. Each
service keeps the ids of revoked, unexpired tokens in memory and refreshes them at least
every `auth.revocation_refresh_seconds`, from the database and from Redis (either may be
down: the other still answers; when both fail the last known set stays in force). So a
revoked token is refused everywhere within that bound.

The first check reads the set on the call's path (a service knows nothing before that);
after it, a background thread refreshes it every interval, so no call waits for the
database or Redis, even when one of them hangs until its timeout (a black-holed Redis
stalled one call per interval by about a second when the refresh ran on the call path).
The thread holds the set only weakly and ends when its `Revocations` is gone or closed.
The `last_used_at` of the tokens seen since the refresh before is written in one
statement from a background thread, so no call waits for a write lock (a long import can
hold SQLite's).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from sqlalchemy.engine import Engine

from ferry.auth import store

log = logging.getLogger("ferry.auth")
REDIS_KEY = "ferry:auth:revoked"


def publish(redis_client: Any, jti: str, expires_at: float) -> bool:
    """Tell services through Redis that `jti` is revoked; False when Redis failed (the
    database still has it, so services learn it from there)."""
    if redis_client is None:
        return False
    try:
        pipe = redis_client.pipeline()
        pipe.zadd(REDIS_KEY, {jti: expires_at})
        pipe.zremrangebyscore(REDIS_KEY, "-inf", time.time())
        pipe.execute()
        return True
    except Exception as e:  # Redis down: the database is the record of truth
        log.warning("revocation not published to Redis: %s", type(e).__name__,
                    extra={"event": "revocation_redis_failed"})  # fmt: skip
        return False


class Revocations:
    """The revoked jtis a service knows, refreshed every `refresh_seconds`."""

    def __init__(
        self, engine: Engine | None, redis_client: Any = None, refresh_seconds: float = 10.0
    ) -> None:
        self.engine = engine
        self.redis = redis_client
        self.refresh_seconds = refresh_seconds
        self._revoked: dict[str, float] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_revoked(self, jti: str) -> bool:
        """Whether `jti` is revoked (as of at most refresh_seconds ago); records its use."""
        if self._thread is None:
            self._start()
        self._used[jti] = time.time()
        return jti in self._revoked

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._refresh_locked()
            self._thread = threading.Thread(
                target=_refresh_loop, args=(weakref.ref(self), self._stop, self.refresh_seconds),
                name="token-revocations", daemon=True,
            )  # fmt: skip
            self._thread.start()

    def close(self) -> None:
        """Stop the background refresh (the set stays as it was)."""
        self._stop.set()

    def _write_uses(self, used: dict[str, float]) -> None:
        try:
            if self.engine is not None:
                store.touch(self.engine, used)
        except Exception as e:  # last use is informational: never fail a call for it
            log.warning("token last use not recorded: %s", type(e).__name__,
                        extra={"event": "token_touch_failed"})  # fmt: skip
        finally:
            self._writing.release()

    def refresh(self) -> None:
        """Reload the revoked ids (one thread at a time; others go on with the old set)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._refresh_locked()
        finally:
            self._lock.release()

    def _refresh_locked(self) -> None:
        used, self._used = self._used, {}
        found: dict[str, float] = {}
        sources = 0
        if self.engine is not None:
            try:
                found.update(store.revoked_ids(self.engine))
                sources += 1
            except Exception as e:
                # Redis alone cannot be complete: keep what the database said before.
                wall = time.time()
                found.update({j: x for j, x in self._revoked.items() if x > wall})
                log.warning("revocations not read from the database: %s", type(e).__name__,
                            extra={"event": "revocation_db_failed"})  # fmt: skip
        if self.redis is not None:
            try:
                now = time.time()
                for jti, exp in self.redis.zrangebyscore(REDIS_KEY, now, "+inf",
                                                         withscores=True):  # fmt: skip
                    key = jti.decode() if isinstance(jti, bytes) else str(jti)
                    found[key] = float(exp)
                sources += 1
            except Exception as e:
                log.warning("revocations not read from Redis: %s", type(e).__name__,
                            extra={"event": "revocation_redis_failed"})  # fmt: skip
        if sources:
            self._revoked = found
        if used and self.engine is not None and self._writing.acquire(blocking=False):
            threading.Thread(target=self._write_uses, args=(used,), name="token-uses",
                             daemon=True).start()  # fmt: skip
        else:  # a write still running (or nothing to write): keep the uses for later
            self._used = {**used, **self._used}


def _refresh_loop(
    ref: weakref.ReferenceType[Revocations], stop: threading.Event, interval: float
) -> None:
    """Refresh every `interval` until stopped or until the Revocations is collected."""
    while not stop.wait(interval):
        revocations = ref()
        if revocations is None:
            return
        revocations.refresh()
        del revocations
