"""Fixtures for entity export jobs: a private seeded database per test (jobs write to it),
a private storage folder, fast worker timings, and test formats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from ferry import plugins
from ferry.app import App
from ferry.tabular.base import Table
from tests.conftest import copied_database, migrated_and_seeded

FAST = {
    "FERRY_EXPORT_POLL_SECONDS": "0.05",
    "FERRY_EXPORT_HEARTBEAT_SECONDS": "0.1",
    "FERRY_EXPORT_PROGRESS_SECONDS": "0.05",
    "FERRY_EXPORT_REAPER_SECONDS": "60",
}


@pytest.fixture
def data_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database with the small demo data, private to this test (a copy of a
    template seeded once per process)."""
    with copied_database(backend, tmp_path, "small-7", migrated_and_seeded("small", 7)) as url:
        yield url


@pytest.fixture
def job_app(data_url: str, make_app: Callable[..., App], tmp_path: Path) -> Callable[..., App]:
    """Apps on the test's database with storage under tmp_path and fast job timings."""

    def make(**overrides: Any) -> App:
        env = {
            **FAST,
            "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(tmp_path / "exports"),
            "FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR": str(tmp_path / "archive"),
            **overrides,
        }
        return make_app(data_url, **env)

    return make


class SlowFormat:
    """Writes one line per row, slowly, reporting progress after each: a job that runs
    long enough to be cancelled or watched."""

    name = "slow"
    extension = "txt"
    content_type = "text/plain"

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.started = threading.Event()

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Callable[[int], object] | None = None,
    ) -> int:
        n = 0
        for row in rows:
            out.write(repr(tuple(row)).encode() + b"\n")
            n += 1
            self.started.set()
            if progress is not None:
                progress(n)
            time.sleep(self.delay)
        return n


class CountingFormat:
    """Counts how often it writes (a job that ran twice would write twice)."""

    name = "counting"
    extension = "txt"
    content_type = "text/plain"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.writes = 0

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Callable[[int], object] | None = None,
    ) -> int:
        with self.lock:
            self.writes += 1
        n = sum(1 for _ in rows)
        out.write(f"{n}\n".encode())
        return n


class BrokenFormat:
    """Fails half-way, after writing some bytes."""

    name = "broken"
    extension = "txt"
    content_type = "text/plain"

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Callable[[int], object] | None = None,
    ) -> int:
        out.write(b"partial")
        raise RuntimeError("disk on fire")


@pytest.fixture
def test_formats() -> Iterator[dict[str, Any]]:
    made = {"slow": SlowFormat(), "counting": CountingFormat(), "broken": BrokenFormat()}
    for name, fmt in made.items():
        plugins.register("ferry.formats", name, lambda app, fmt=fmt: fmt)  # factory(app)
    yield made
    for name in made:
        plugins.unregister("ferry.formats", name)


def files_in(folder: Path) -> list[Path]:
    """Every file under `folder` (temp files included)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
