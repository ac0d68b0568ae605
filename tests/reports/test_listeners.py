"""Data versions kept in memory (ferry.reports.versions.Listener) are never stale: with
several reports engines (replicas, each with its own listener connection and memory), the
moment an import, an undo or a backup restore returns, every replica answers from the new
data; a replica whose listener connection is cut reads the versions from the database
again and an import still returns (after that replica's lease); a killed replica, its
lease row left behind, holds an import up only until its lease ran out. PostgreSQL only
(SQLite reads the versions on every hit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch
from ferry.cache.breaker import CircuitBreaker
from ferry.cache.memory import MemoryCache
from ferry.cache.report_cache import ReportCache
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import MergeOptions, Status, Strategy, run_import, undo_import
from ferry.reports.engine import ReportEngine
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope
from tests.merge.helpers import bundle, records
from tests.reports.helpers import SEM, Proxy

LEASE = 1.0  # seconds: short, so the cut and killed replicas cost the tests little
# Listeners are PostgreSQL's (SQLite reads the versions on every hit): the `backend`
# fixture's parameters are replaced by this one, so no SQLite case is collected to skip.
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", ["postgres"])]


@pytest.fixture
def pg_url(school_url: str, backend: str) -> str:
    assert backend == "postgres"
    return school_url


@pytest.fixture
def db(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def replica(pg_url: str) -> Iterator[Callable[..., ReportEngine]]:
    """make(listen_url=...) -> a reports engine of its own (memory cache, listener), as
    another process would have; closed afterwards."""
    made: list[tuple[ReportEngine, list[Engine]]] = []

    def make(listen_url: str | None = None) -> ReportEngine:
        engines = [make_engine(pg_url)]
        if listen_url is not None:
            engines.append(make_engine(listen_url))
        settings = ReportSettings(versions="auto", versions_lease_seconds=LEASE)
        cache = ReportCache(MemoryCache(), "memory", 900, 10, 2, CircuitBreaker("memory", 2, 5.0))
        r = ReportEngine(engines[0], settings, cache, listen_engine=engines[-1])
        made.append((r, engines))
        return r

    yield make
    for r, engines in made:
        r.close()
        for e in engines:
            e.dispose()


def _wait(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def _name(r: ReportEngine) -> tuple[str, bool]:
    report, cached = r.student("S1", Scope(semester=SEM))
    return report.first_name, cached


def _warm(r: ReportEngine) -> str:
    """S1's report cached and its versions held in memory under a live lease (the next
    read is a hit that reads nothing from the database); its name."""
    listener = r.versions.listener
    assert listener is not None

    def held() -> bool:
        _, cached = _name(r)
        return cached and listener.healthy and bool(listener.stamps)

    _wait(held, "a hit takes its versions from the replica's memory")
    return _name(r)[0]


def _rename(db: Engine, name: str, backup: Any = None) -> Any:
    """An import (students csv, update) that renames S1; its outcome once it returned.
    With `backup`, one taken before it (for a restore)."""
    s1 = next(s for s in records(bundle(db, SEM))["students"] if s["student_id"] == "S1")
    outcome = run_import(
        db,
        SCHOOL,
        [Batch("students", [{**s1, "first_name": name}])],
        MergeOptions(strategy=Strategy.UPDATE, backup_before=backup is not None),
        requested_by="tester",
        source_sha256=f"sha-{name}",
        entity="students",
        backup=backup,
    )
    assert outcome.status is Status.COMPLETED
    return outcome


def _lease_of(db: Engine, listener_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(
            sa.text("SELECT lease_until FROM report_listeners WHERE id = :id"),
            {"id": listener_id},
        ).scalar()


def _after(db: Engine, when: Any) -> bool:
    with db.connect() as conn:
        return bool(conn.execute(sa.text("SELECT now() >= :t"), {"t": when}).scalar())


def test_every_replica_is_fresh_the_moment_an_import_returns(
    db: Engine, replica: Callable[..., ReportEngine]
) -> None:
    """Two replicas hit S1's report from memory; an import through the merge engine
    renames S1, fifteen times: the moment it returns, both answer with the new name (their
    listeners dropped the versions and acknowledged before it returned)."""
    a, b = replica(), replica()
    for r in (a, b):
        assert _warm(r) == "Ελένη"
    for n in range(15):
        name = f"Name{n:02d}"
        _rename(db, name)
        for r in (a, b):
            assert _name(r) == (name, False)
            assert _name(r) == (name, True)


def test_undo_and_restore_reach_every_replica_before_they_return(
    db: Engine, replica: Callable[..., ReportEngine], tmp_path: Path
) -> None:
    from ferry.imports.backup import before_import, restore_import_backup
    from ferry.storage.local import LocalStorage

    a, b = replica(), replica()
    for r in (a, b):
        _warm(r)
    outcome = _rename(db, "Undone")
    for r in (a, b):
        assert _name(r)[0] == "Undone"
        _warm(r)
    undo_import(db, SCHOOL, outcome.id, requested_by="tester")
    for r in (a, b):
        assert _name(r) == ("Ελένη", False)
        _warm(r)
    storage = LocalStorage.at(tmp_path / "storage", tmp_path / "archive")
    renamed = _rename(db, "Backed", backup=before_import(db, SCHOOL, storage, "tester"))
    assert renamed.backup_key
    for r in (a, b):
        assert _name(r)[0] == "Backed"
        _warm(r)
    restored = restore_import_backup(
        db, SCHOOL, storage, renamed.id, dry_run=False, requested_by="tester"
    )
    assert restored.status is Status.COMPLETED
    for r in (a, b):
        assert _name(r) == ("Ελένη", False)


def test_a_cut_listener_reads_from_the_database_and_imports_still_return(
    db: Engine, replica: Callable[..., ReportEngine], pg_url: str
) -> None:
    """Replica B's listener connection goes through a proxy, which is cut: B's memory can
    no longer hear of imports. An import right after the cut returns only once B's lease
    ran out (it dropped B's row: the lease had ended by the database's clock), and B then
    answers with the new data (its lease gone, it reads the versions again). Once the
    proxy is back, B's listener starts over and hits come from memory again, fresh."""
    url = sa.make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    try:
        listen_url = url.set(host="127.0.0.1", port=proxy.port)
        a = replica()
        b = replica(listen_url.render_as_string(hide_password=False))
        for r in (a, b):
            _warm(r)
        lb = b.versions.listener
        assert lb is not None
        proxy.stop()  # cut: renewals, notifications and reconnections all fail now
        lease = _lease_of(db, lb.id)
        assert lease is not None
        _rename(db, "Cut")
        assert _lease_of(db, lb.id) is None  # dropped by the import: its lease had ended
        assert _after(db, lease)
        for r in (a, b):
            assert _name(r) == ("Cut", False)
        assert not lb.healthy
        _rename(db, "StillCut")  # no live lease left to wait for
        assert _name(b) == ("StillCut", False)
        assert _name(b) == ("StillCut", True)  # a hit, its versions read from the database
        proxy.start()
        _wait(lambda: lb.healthy, "the listener is back through the proxy")
        assert _warm(b) == "StillCut"
        _rename(db, "Back")
        for r in (a, b):
            assert _name(r) == ("Back", False)
    finally:
        proxy.stop()


_REPLICA = """
import sys, time
from ferry.db.engine import make_engine
from ferry.reports import versions

engine = make_engine(sys.argv[1])
reader = versions.VersionReader(engine, listen=True, lease_seconds=float(sys.argv[2]))
reader.stamp(versions.STUDENT, "S1")
while not reader.listener.healthy:
    time.sleep(0.01)
print(reader.listener.id, flush=True)
time.sleep(3600)
"""


def test_a_killed_replica_holds_an_import_up_only_until_its_lease_ends(
    db: Engine, replica: Callable[..., ReportEngine], pg_url: str
) -> None:
    """A replica process with a listener is SIGKILLed: its lease row stays behind, never
    to be acknowledged. The next import returns all the same, once that lease has ended
    by the database's clock (and drops the row); a live replica is fresh at once."""
    a = replica()
    _warm(a)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", _REPLICA, pg_url, str(LEASE)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        dead_id = proc.stdout.readline().strip()
        assert dead_id, "the replica process did not start its listener"
        assert _lease_of(db, dead_id) is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        lease = _lease_of(db, dead_id)
        assert lease is not None  # left behind
        _rename(db, "AfterKill")
        assert _lease_of(db, dead_id) is None  # dropped by the import, its lease over
        assert _after(db, lease)
        assert _name(a) == ("AfterKill", False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
