"""System tests: Ferry as separate processes on the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import copied_database, migrated_and_seeded
from tests.system.harness import Cluster, cluster


@pytest.fixture
def seeded_pg(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database with the medium demo data, one semester (2026-fall) of
    ~100k records, per test (faults write): a copy of a template seeded once per process."""
    build = migrated_and_seeded("medium", 13)
    with copied_database("postgres", tmp_path, "medium-13", build) as url:
        yield url


@pytest.fixture
def small_pg(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database with the small demo data (~6,000 records over three
    semesters), for scenarios about the services around the data, not its size."""
    with copied_database("postgres", tmp_path, "small-13", migrated_and_seeded("small", 13)) as url:
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
