"""Whole-database bundles (scope all): every record, those in no semester too, in every
bundle format; restored into an empty database every table is as it was (issue 10)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry import plugins
from ferry.bundle.bundlefile import download_session
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, BundleLimits, Header
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.errors import InvalidArgument
from ferry.merge import MergeOptions, Status, Strategy, run_import
from tests.bundle.helpers import FORMATS
from tests.conftest import fresh_database
from tests.merge.helpers import checksum

ALL = SessionRequest("", include_deleted=True, scope="all")


@pytest.fixture
def demo(empty_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_url)
    seed(engine, Scale.SMALL, seed=11)
    yield engine
    engine.dispose()


@pytest.fixture
def empty(backend: str, tmp_path: Path) -> Iterator[Engine]:
    with fresh_database(backend, tmp_path / "restore") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        yield engine
        engine.dispose()


def test_a_whole_database_bundle_holds_every_record(demo: Engine) -> None:
    events = list(session_events(demo, SCHOOL, ALL))
    header = events[0]
    assert isinstance(header, Header) and header.metadata.scope == "all"
    assert header.metadata.semester == ""
    sent: dict[str, int] = {}
    for e in events:
        if isinstance(e, Batch):
            sent[e.entity] = sent.get(e.entity, 0) + len(e.records)
    with demo.connect() as conn:
        for entity in SCHOOL.in_order():
            total = conn.execute(sa.select(sa.func.count()).select_from(entity.table)).scalar()
            assert sent.get(entity.name, 0) == total == header.metadata.counts[entity.name]
        lonely = conn.execute(
            sa.text(
                "SELECT count(*) FROM students "
                "WHERE id NOT IN (SELECT student_ref FROM enrollments)"
            )
        ).scalar()
    assert lonely, "the demo data has students in no course, and the backup holds them"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_backup_in_every_format_restores_every_table(
    demo: Engine, empty: Engine, fmt: str
) -> None:
    data = b"".join(p.data for p in download_session(demo, SCHOOL, ALL, fmt))
    reader = plugins.load("ferry.bundle_formats", fmt)()
    events = reader.read(io.BytesIO(data), BundleLimits())
    outcome = run_import(
        empty,
        SCHOOL,
        events,
        MergeOptions(strategy=Strategy.REPLACE),
        requested_by="tester",
        source_sha256="x",
    )
    assert outcome.status is Status.COMPLETED, outcome.errors[:3]
    assert checksum(empty) == checksum(demo)


def test_scope_all_names_no_semester_and_unknown_scopes_are_refused(demo: Engine) -> None:
    with pytest.raises(InvalidArgument) as both:
        list(session_events(demo, SCHOOL, SessionRequest("2026-fall", scope="all")))
    assert both.value.field == "semester"
    with pytest.raises(InvalidArgument) as unknown:
        list(session_events(demo, SCHOOL, SessionRequest("", scope="everything")))
    assert unknown.value.field == "scope"


def test_a_backup_before_a_bulk_load_holds_the_state_the_import_started_from(
    demo: Engine, empty: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup runs beside the merge; on PostgreSQL the bulk path's ACCESS EXCLUSIVE
    lock waits for it (no deadlock), and it holds exactly the rows before the import."""
    from ferry.imports.backup import before_import
    from ferry.merge import apply
    from ferry.storage.local import LocalStorage
    from tests.merge.helpers import rebuild, records

    monkeypatch.setattr(apply, "BULK_MIN_ROWS", 1)
    fall = list(session_events(demo, SCHOOL, SessionRequest("2026-fall", include_deleted=True)))
    by = records(fall)
    half = dict(by, grades=by["grades"][: len(by["grades"]) // 2])
    opts = {"requested_by": "tester", "source_sha256": "x"}
    first = run_import(empty, SCHOOL, rebuild(half), MergeOptions(), **opts)
    assert first.status is Status.COMPLETED
    storage = LocalStorage.at(tmp_path / "storage", tmp_path / "archive")
    full = run_import(
        empty,
        SCHOOL,
        fall,
        MergeOptions(strategy=Strategy.REPLACE),
        backup=before_import(empty, SCHOOL, storage, "tester"),
        **opts,
    )
    assert full.status is Status.COMPLETED and full.backup_key
    taken = list(
        plugins.load("ferry.bundle_formats", "json")().read(
            storage.open(full.backup_key), BundleLimits()
        )
    )
    assert sum(len(e.records) for e in taken if isinstance(e, Batch) and e.entity == "grades") == (
        len(half["grades"])
    )
