"""Fixtures for merge tests: a source database per backend (small demo data, only ever
read, shared by the session) and an empty target database per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from tests.conftest import fresh_database
from tests.merge.helpers import bundle


@pytest.fixture(scope="session")
def source_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """backend -> URL of a seeded source database, created on first use."""
    urls: dict[str, str] = {}
    with ExitStack() as stack:

        def get(backend: str) -> str:
            if backend not in urls:
                folder: Path = tmp_path_factory.mktemp("merge-source")
                url = stack.enter_context(fresh_database(backend, folder))
                engine = make_engine(url)
                migrate.upgrade(engine)
                seed(engine, Scale.SMALL, seed=7)
                engine.dispose()
                urls[backend] = url
            return urls[backend]

        yield get


@pytest.fixture
def source(backend: str, source_urls: Callable[[str], str]) -> Iterator[Engine]:
    """The seeded source database of this backend (read only)."""
    engine = make_engine(source_urls(backend))
    yield engine
    engine.dispose()


@pytest.fixture
def events(source: Engine) -> list[Event]:
    """The 2026-fall bundle of the source database."""
    return bundle(source)


@pytest.fixture
def target(empty_url: str) -> Iterator[Engine]:
    """An empty, migrated database of this test's own."""
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()
