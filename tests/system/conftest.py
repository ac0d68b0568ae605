"""System tests: Ferry as separate processes on the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from tests.conftest import fresh_database
from tests.system.harness import Cluster, cluster


@pytest.fixture
def seeded_pg(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database with the medium demo data, one semester (2026-fall) of
    ~100k records, per test (faults write)."""
    with fresh_database("postgres", tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.MEDIUM, seed=13)
        engine.dispose()
        yield url


@pytest.fixture
def small_pg(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database with the small demo data (~6,000 records over three
    semesters), for scenarios about the services around the data, not its size."""
    with fresh_database("postgres", tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.SMALL, seed=13)
        engine.dispose()
        yield url


@pytest.fixture
def system(seeded_pg: str, tmp_path: Path) -> Iterator[Cluster]:
    with cluster(seeded_pg, tmp_path) as c:
        yield c


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/system/" in str(item.fspath):
            item.add_marker(pytest.mark.system)
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.slow)
