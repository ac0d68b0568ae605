from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.app import App
from ferry.db.engine import make_engine
from ferry.reports.engine import ReportEngine
from tests.conftest import IN_CI, REDIS, _redis_reachable
from tests.reports.helpers import build


@pytest.fixture
def school_url(empty_url: str) -> str:
    """A migrated database on each backend holding the hand-computed school."""
    engine = make_engine(empty_url)
    build(engine)
    engine.dispose()
    return empty_url


@pytest.fixture
def reports_app(school_url: str, make_app: Callable[..., App]) -> App:
    return make_app(school_url)


@pytest.fixture
def engine(reports_app: App) -> Iterator[ReportEngine]:
    reports = ReportEngine.from_app(reports_app)
    yield reports
    reports.close()  # its version listener's thread and connection (PostgreSQL)


REDIS_URL = f"redis://{REDIS[0]}:{REDIS[1]}/0"


def require_redis() -> None:
    err = _redis_reachable()
    if err:
        if IN_CI:
            pytest.fail(f"Redis unreachable: {err}")
        pytest.skip(f"Redis unreachable: {err}")


@pytest.fixture
def redis_app(
    school_url: str, make_app: Callable[..., App], tmp_path: Path
) -> Iterator[Callable[..., App]]:
    """Apps on the school database whose report cache is the real Redis (a key prefix of
    their own, removed afterwards)."""
    require_redis()
    prefix = f"ferry-test-{tmp_path.name}-"
    made: list[App] = []

    def make(**overrides: Any) -> App:
        env = {
            "FERRY_REDIS_URL": REDIS_URL,
            "FERRY_PLUGINS_SERVICES_REPORTS_CACHE_BACKEND": "redis",
            "FERRY_PLUGINS_CACHES_REDIS_KEY_PREFIX": prefix,
        }
        env.update(overrides)
        app = make_app(school_url, **env)
        made.append(app)
        return app

    yield make
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(prefix + "*"))
    if keys:
        r.delete(*keys)
    r.close()
