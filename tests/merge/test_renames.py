"""Renamed keys followed: a student renamed at the source arrives as one student with
every grade, not a duplicate beside an orphan; deltas carry renames; undo reverses one;
a rename onto an existing key is a listed conflict."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.events import session_events
from ferry.bundle.formats.base import BundleLimits, Event, Header
from ferry.bundle.formats.json import JsonBundle
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.errors import InvalidArgument
from ferry.merge import Status, undo_import
from ferry.merge.renames import rename_key
from tests.conftest import migrated_database
from tests.merge.helpers import SEMESTER, bundle, checksum, records, run, scalar


@pytest.fixture
def second(backend: str, tmp_path: Path) -> Any:
    with migrated_database(backend, tmp_path) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _grades(engine: Engine, student: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.course_code, g.assessment, g.score FROM grades g "
                "JOIN enrollments e ON e.id = g.enrollment_ref "
                "JOIN students s ON s.id = e.student_ref "
                "JOIN courses c ON c.id = e.course_ref WHERE s.student_id = :s "
                "ORDER BY 1, 2"
            ),
            {"s": student},
        )
        return [tuple(r) for r in rows]


def _student(events: list[Event]) -> str:
    """A live student of the bundle with grades."""
    recs = records(events)
    graded = {g["student_id"] for g in recs["grades"] if g["deleted_at"] is None}
    return next(
        s["student_id"]
        for s in recs["students"]
        if s["deleted_at"] is None and s["student_id"] in graded
    )


def _through_json(events: list[Event]) -> list[Event]:
    """The events written as a json bundle file and read back (renames travel in it)."""
    fmt = JsonBundle()
    out = io.BytesIO()
    fmt.write(events, out)
    return list(fmt.read(io.BytesIO(out.getvalue()), BundleLimits()))


def test_a_student_renamed_at_the_source_is_one_student_with_every_grade(
    events: list[Event], target: Engine, second: Engine
) -> None:
    # Two installations holding the same semester; the source renames a student.
    assert run(target, events).status is Status.COMPLETED
    assert run(second, events).status is Status.COMPLETED
    old = _student(events)
    grades = _grades(second, old)
    assert grades
    students = scalar(second, "SELECT count(*) FROM students")
    since = dt.datetime.now(dt.UTC)
    renamed = rename_key(target, SCHOOL, "students", old, "S-RENAMED", requested_by="office")
    assert renamed.status is Status.COMPLETED
    # The source's next bundle (a delta since before the rename, through a json file)
    # carries the rename and the student's records under the new key.
    delta = _through_json(
        list(
            session_events(
                target,
                SCHOOL,
                SessionRequest(SEMESTER, include_deleted=True, updated_since=since),
            )
        )
    )
    header = delta[0]
    assert isinstance(header, Header)
    assert [(r.entity, r.old_key, r.new_key) for r in header.metadata.renames] == [
        ("students", old, "S-RENAMED")
    ]
    before = checksum(second)
    out = run(second, delta)
    assert out.status is Status.COMPLETED, out.errors
    assert next(s for s in out.summaries if s.entity == "students").renamed == 1
    assert scalar(second, "SELECT count(*) FROM students") == students  # no duplicate
    assert not scalar(second, "SELECT count(*) FROM students WHERE student_id = :s", s=old)
    assert _grades(second, "S-RENAMED") == grades  # every grade stayed with the student
    # Undo takes the rename back.
    undo_import(second, SCHOOL, out.id)
    assert _grades(second, old) == grades and not _grades(second, "S-RENAMED")
    assert checksum(second) == before
    # A full bundle of the source carries the rename too, and a second import of it
    # changes nothing more.
    full = bundle(target)
    assert run(second, full).status is Status.COMPLETED
    again = run(second, full)
    assert next(s for s in again.summaries if s.entity == "students").renamed == 0
    assert scalar(second, "SELECT count(*) FROM students") == students


def test_a_rename_onto_an_existing_key_is_a_listed_conflict(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    recs = records(events)
    first, other = (s["student_id"] for s in recs["students"][:2])
    before = checksum(target)
    out = rename_key(target, SCHOOL, "students", first, other, requested_by="office")
    assert out.status is Status.FAILED
    (error,) = out.errors
    assert error.entity == "students" and error.natural_key == first
    assert error.field == "student_id" and "exists already" in error.reason
    assert checksum(target) == before


def test_renames_of_keys_made_of_parents_or_malformed_are_refused(
    events: list[Event], target: Engine
) -> None:
    with pytest.raises(InvalidArgument, match="cannot be renamed"):
        rename_key(target, SCHOOL, "grades", "a", "b", requested_by="x")
    with pytest.raises(InvalidArgument, match="unknown entity"):
        rename_key(target, SCHOOL, "pupils", "a", "b", requested_by="x")
    fmt = JsonBundle()
    bad = (
        b'{"metadata": {"semester": "2026-fall", "exported_at": "2026-01-01T00:00:00+00:00",'
        b' "dataset": "school", "format_version": 1, "renames": [{"entity": "students",'
        b' "old_key": "", "new_key": "x", "renamed_at": "2026-01-01T00:00:00+00:00"}]}}'
    )
    with pytest.raises(InvalidArgument) as e:
        list(fmt.read(io.BytesIO(bad), BundleLimits()))
    assert e.value.field == "metadata.renames[0].old_key"
