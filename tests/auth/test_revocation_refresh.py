"""The revocation set is refreshed in the background: once a service knows it, no call
waits for the database or Redis, even when one of them never answers."""

from __future__ import annotations

import gc
import secrets
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ferry.auth.revocation import Revocations, publish
from tests.conftest import REDIS, _redis_reachable
from tests.reports.helpers import BlackHole


def test_no_call_waits_for_a_black_holed_redis_after_the_first() -> None:
    hole = BlackHole()
    # As ferry.app.App.redis builds it: short timeouts, one retry, no backoff (redis-py's
    # defaults retry with backoff for 13 s per command on a black hole).
    client = redis.Redis(port=hole.port, socket_timeout=0.2, socket_connect_timeout=0.2,
                         retry=Retry(NoBackoff(), 1))  # fmt: skip
    try:
        rev = Revocations(None, client, refresh_seconds=0.1)
        t = time.perf_counter()
        assert not rev.is_revoked("a")  # the first check reads (and waits the timeout)
        assert time.perf_counter() - t >= 0.3
        slowest = 0.0
        end = time.monotonic() + 1.5  # many intervals, each refresh hung for 0.4 s
        while time.monotonic() < end:
            t = time.perf_counter()
            assert not rev.is_revoked("a")
            slowest = max(slowest, time.perf_counter() - t)
            time.sleep(0.01)
        # A call that waited for a hung refresh would wait at least one socket timeout
        # (0.2 s); the bound leaves room for a loaded machine's scheduling.
        assert slowest < 0.15, f"a call waited {slowest:.3f} s for the refresh"
        rev.close()
    finally:
        client.close()
        hole.close()


@pytest.mark.redis
def test_a_revocation_is_learned_without_any_call_asking() -> None:
    if err := _redis_reachable():
        pytest.skip(f"Redis at {REDIS} is unreachable: {err}")
    client = redis.Redis(host=REDIS[0], port=REDIS[1], socket_timeout=1)
    try:
        rev = Revocations(None, client, refresh_seconds=0.2)
        jti = secrets.token_hex(8)
        assert not rev.is_revoked(jti)
        assert publish(client, jti, time.time() + 60)
        deadline = time.monotonic() + 20  # no call in between: the background thread
        while jti not in rev._revoked and time.monotonic() < deadline:  # refreshes
            time.sleep(0.05)
        assert jti in rev._revoked
        assert rev.is_revoked(jti)
        rev.close()
    finally:
        client.close()


def test_the_refresh_thread_ends_with_its_set() -> None:
    rev = Revocations(None, None, refresh_seconds=0.05)
    rev.is_revoked("a")
    thread = rev._thread
    assert thread is not None and thread.is_alive()
    del rev
    gc.collect()
    thread.join(timeout=2)
    assert not thread.is_alive()
