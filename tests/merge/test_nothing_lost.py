"""The ways the landed merge lost data (issue 10), as tests: undo of an import that later
imports depend on, a delta bundle imported with replace, database errors whose SQL ended
up in stored and returned messages."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.datasets.school import SCHOOL
from ferry.errors import FailedPrecondition, FerryError, InvalidArgument
from ferry.merge import Status, get_import, list_imports, undo_import
from ferry.v1 import bundle_pb2 as pb
from tests.merge.helpers import SEMESTER, checksum, records, run, scalar

# What a statement or its parameters look like in a message.
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|VALUES)\b|\[SQL|\[parameters", re.I)


def _students_only(events: list[Event]) -> list[Event]:
    """The bundle's students as one entity import (what a students csv gives)."""
    return [Batch("students", records(events)["students"])]


def test_undo_refuses_when_a_later_import_depends_on_its_rows(
    events: list[Event], target: Engine
) -> None:
    a = run(target, _students_only(events), entity="students")
    assert a.status is Status.COMPLETED
    b = run(target, events)
    assert b.status is Status.COMPLETED
    grades = scalar(target, "SELECT count(*) FROM grades")
    assert grades > 0
    before = checksum(target)
    for force in (False, True):  # force overrides "changed since", never "depended on"
        with pytest.raises(FailedPrecondition) as refused:
            undo_import(target, SCHOOL, a.id, force=force)
        message = refused.value.message
        assert b.id in message, message  # names the later import
        assert "undo" in message and "first" in message, message
        assert re.search(r"enrollments \S+/\S+", message), message  # a dependent record
        assert checksum(target) == before
    assert get_import(target, a.id).status is Status.COMPLETED
    # Newest first works, and then the earlier one too.
    undo_import(target, SCHOOL, b.id)
    undo_import(target, SCHOOL, a.id)
    assert scalar(target, "SELECT count(*) FROM students") == 0


def _delta(semester: str = SEMESTER) -> list[Event]:
    since = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    meta = pb.BundleMetadata(semester=semester, dataset="school")
    meta.updated_since.FromDatetime(since)
    return [Header(meta, updated_since=since), Trailer({})]


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_delta_bundle_with_replace_is_refused_and_changes_nothing(
    events: list[Event], target: Engine, dry_run: bool
) -> None:
    run(target, events)
    before = checksum(target)
    with pytest.raises(InvalidArgument) as refused:
        run(target, _delta(), strategy="replace", dry_run=dry_run)
    assert "merge_strategy" in refused.value.message
    assert "updated_since 2026-11-01T00:00:00Z" in refused.value.message
    assert refused.value.field == "options.strategy"
    assert checksum(target) == before


def _failing_trigger(engine: Engine) -> None:
    """Make every insert into grades fail inside the database."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER no_grades BEFORE INSERT ON grades "
                "BEGIN SELECT RAISE(ABORT, 'grades are closed'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION no_grades() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'grades are closed'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER no_grades BEFORE INSERT ON grades "
                "FOR EACH ROW EXECUTE FUNCTION no_grades()"
            )


def test_a_database_error_during_an_import_is_stored_and_raised_in_words(
    events: list[Event], target: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _failing_trigger(target)
    with pytest.raises(FerryError) as failed:
        run(target, events)
    message = failed.value.message
    assert not SQL.search(message), message
    ref = re.search(r"reference ([0-9a-f]{12})", message)
    assert ref, message
    assert "grades" in message, message
    stored = list_imports(target, 10, "").items[0]
    assert stored.status is Status.FAILED
    assert not SQL.search(stored.error_message), stored.error_message
    assert ref.group(1) in stored.error_message
    # The whole exception, SQL included, is in the log line carrying the same reference.
    logged = [r for r in caplog.records if ref.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert scalar(target, "SELECT count(*) FROM students") == 0
    with target.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM imports")).scalar_one() == 1


def _delta_of(events: list[Event], entity: str, index: int, **changes: object) -> list[Event]:
    """A delta bundle holding one record of `entity`, changed."""
    since = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    meta = pb.BundleMetadata(semester=SEMESTER, dataset="school")
    meta.updated_since.FromDatetime(since)
    rec = dict(records(events)[entity][index], **changes)
    return [Header(meta, updated_since=since), Batch(entity, [rec]), Trailer({entity: 1})]


def test_a_delta_with_update_applies_its_deletions_as_soft_deletes_and_counts_them(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    live = next(i for i, g in enumerate(records(events)["grades"]) if g["deleted_at"] is None)
    gone = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    delta = _delta_of(events, "grades", live, deleted_at=gone)
    before = checksum(target)
    preview = run(target, delta, strategy="update", dry_run=True)
    assert checksum(target) == before
    real = run(target, delta, strategy="update")
    for outcome in (preview, real):
        (grades,) = [s for s in outcome.summaries if s.entity == "grades"]
        assert (grades.deleted, grades.updated, grades.created) == (1, 0, 0), outcome.summaries
        assert [c.action for c in outcome.sample_changes if c.entity == "grades"] == ["delete"]
    rec = records(events)["grades"][live]
    deleted = scalar(
        target,
        "SELECT count(*) FROM grades g JOIN enrollments e ON e.id = g.enrollment_ref "
        "JOIN students s ON s.id = e.student_ref WHERE s.student_id = :s "
        "AND g.assessment = :a AND g.deleted_at IS NOT NULL",
        s=rec["student_id"],
        a=rec["assessment"],
    )
    assert deleted == 1
    undo_import(target, SCHOOL, real.id)
    assert checksum(target) == before
