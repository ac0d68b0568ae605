"""ferry.ratelimit.Limiter: at most `limit` hits in any `window_seconds`, also across the
edge of a clock-aligned window, in process and on Redis."""

from __future__ import annotations

import time
import uuid

import pytest

from ferry.ratelimit import Limiter
from tests.reports.conftest import REDIS_URL, require_redis


def _just_before_a_window_edge(window: int) -> None:
    """Sleep until 0.3 s before the next multiple of `window` seconds of the clock."""
    now = time.time()
    edge = (now // window + 1) * window
    if edge - now < 0.3:
        edge += window
    time.sleep(edge - now - 0.3)


@pytest.mark.parametrize("shared", [False, pytest.param(True, marks=pytest.mark.redis)])
def test_no_more_than_the_limit_across_a_window_edge(shared: bool) -> None:
    """A sliding-window *counter* lets a fourth attempt through right after the edge
    (3 hits weighted by 0.99 round down to 2); a login limit of 3 must stay 3."""
    redis_client = None
    if shared:
        require_redis()
        import redis

        redis_client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    limiter = Limiter(f"edge-{uuid.uuid4().hex[:8]}", 3, 2, redis_client)
    _just_before_a_window_edge(2)
    assert [limiter.hit("eleni").allowed for _ in range(3)] == [True, True, True]
    time.sleep(0.4)  # past the edge, well inside 2 s of the first hit
    refused = limiter.hit("eleni")
    assert not refused.allowed
    assert refused.backend == ("redis" if shared else "memory")
    assert 1 <= refused.retry_after <= 2
    assert limiter.hit("someone else").allowed


def test_hits_age_out_after_the_window() -> None:
    limiter = Limiter(f"age-{uuid.uuid4().hex[:8]}", 2, 1)
    assert limiter.hit("k").allowed and limiter.hit("k").allowed
    assert not limiter.hit("k").allowed
    time.sleep(1.1)
    assert limiter.hit("k").allowed


def test_clear_forgets_the_hits() -> None:
    limiter = Limiter(f"clear-{uuid.uuid4().hex[:8]}", 1, 60)
    assert limiter.hit("k").allowed and not limiter.hit("k").allowed
    limiter.clear("k")
    assert limiter.hit("k").allowed
