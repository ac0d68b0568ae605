"""Partial records are partial (issue 21, item 1): an entity import changes only the fields
its file carries. An absent column is never written, `deleted_at` included (a file
without it never deletes nor un-deletes), and the preview's sample changes list only
carried fields. The oracle is plain SQL on the rows before and after."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.datasets.school import SCHOOL
from ferry.errors import InvalidArgument
from ferry.imports.tabular import row_batches
from ferry.merge import Status, undo_import
from tests.merge.helpers import checksum, counts, execute, records, run, scalar


def _csv_events(entity: str, header: list[str], rows: list[dict[str, Any]]) -> list[Event]:
    """What an ImportEntities csv upload gives the merge engine: the file's text rows."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, header)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r[k] is None else r[k] for k in header})
    reader = csv.DictReader(io.StringIO(buf.getvalue()))
    return list(row_batches(SCHOOL.entity(entity), reader, {}, 500))


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


GRADE_COLUMNS = ["student_id", "course_code", "assessment", "score", "max_score", "weight"]


def test_a_grades_csv_without_graded_on_and_comment_keeps_them(
    target: Engine, events: list[Event]
) -> None:
    assert run(target, events).status is Status.COMPLETED
    # A grade with both a date and a comment, live.
    gid, graded_on, comment = _rows(
        target,
        "SELECT id, graded_on, comment FROM grades WHERE graded_on IS NOT NULL "
        "AND comment IS NOT NULL AND comment <> '' AND deleted_at IS NULL ORDER BY id LIMIT 1",
    )[0]
    grades = records(events)["grades"]
    before = checksum(target)
    before_rows = _rows(target, "SELECT * FROM grades WHERE id <> :g ORDER BY id", g=gid)
    keyed = _rows(
        target,
        "SELECT s.student_id, c.course_code, g.assessment FROM grades g "
        "JOIN enrollments e ON e.id = g.enrollment_ref JOIN students s ON s.id = e.student_ref "
        "JOIN courses c ON c.id = e.course_ref WHERE g.id = :g",
        g=gid,
    )[0]
    rows = [dict(r) for r in grades]
    for r in rows:
        if (r["student_id"], r["course_code"], r["assessment"]) == keyed:
            r["score"] = float(r["score"]) + 0.5 if r["score"] < r["max_score"] else 0.0
            new_score = r["score"]
    partial = _csv_events("grades", GRADE_COLUMNS, rows)

    preview = run(target, partial, entity="grades", dry_run=True)
    assert counts(preview) == {"grades": {"updated": 1, "unchanged": len(rows) - 1}}
    [change] = preview.sample_changes
    assert [f for f, _, _ in change.changes] == ["score"]  # only carried fields, only one
    assert checksum(target) == before  # a dry run changes nothing

    done = run(target, partial, entity="grades")
    assert done.status is Status.COMPLETED
    assert counts(done) == {"grades": {"updated": 1, "unchanged": len(rows) - 1}}
    after = _rows(target, "SELECT score, graded_on, comment FROM grades WHERE id = :g", g=gid)[0]
    assert after[0] == pytest.approx(new_score)
    assert (after[1], after[2]) == (graded_on, comment)  # not carried: untouched
    assert _rows(target, "SELECT * FROM grades WHERE id <> :g ORDER BY id", g=gid) == before_rows
    undo_import(target, SCHOOL, done.id)
    assert checksum(target) == before


STUDENT_COLUMNS = ["student_id", "first_name", "last_name", "email", "year_level", "status"]


def test_a_students_csv_without_birth_date_and_deleted_at_keeps_them(
    target: Engine, events: list[Event]
) -> None:
    assert run(target, events).status is Status.COMPLETED
    students = records(events)["students"]
    # One live student is soft-deleted here (as an office would); the csv still lists them.
    gone = next(s for s in students if s["deleted_at"] is None)["student_id"]
    execute(
        target,
        "UPDATE students SET deleted_at = CURRENT_TIMESTAMP WHERE student_id = :s",
        s=gone,
    )
    births = dict(_rows(target, "SELECT student_id, date_of_birth FROM students"))
    assert any(v is not None for v in births.values())
    deleted = dict(_rows(target, "SELECT student_id, deleted_at FROM students"))
    assert deleted[gone] is not None
    before = checksum(target)
    rows = [dict(r) for r in students]
    fixed = next(r for r in rows if r["student_id"] != gone)
    fixed["email"] = "corrected@example.org"
    partial = _csv_events("students", STUDENT_COLUMNS, rows)

    preview = run(target, partial, entity="students", dry_run=True)
    assert counts(preview) == {"students": {"updated": 1, "unchanged": len(rows) - 1}}
    assert {f for c in preview.sample_changes for f, _, _ in c.changes} == {"email"}
    assert checksum(target) == before

    done = run(target, partial, entity="students")
    assert counts(done) == {"students": {"updated": 1, "unchanged": len(rows) - 1}}
    assert dict(_rows(target, "SELECT student_id, date_of_birth FROM students")) == births
    assert dict(_rows(target, "SELECT student_id, deleted_at FROM students")) == deleted
    assert scalar(target, "SELECT email FROM students WHERE student_id = :s",
                  s=fixed["student_id"]) == "corrected@example.org"  # fmt: skip
    undo_import(target, SCHOOL, done.id)
    assert checksum(target) == before


def test_a_carried_deleted_at_still_deletes_and_undeletes(
    target: Engine, events: list[Event]
) -> None:
    """The rule is about absence: a file that carries deleted_at is obeyed, empty cell
    (null) and all."""
    assert run(target, events).status is Status.COMPLETED
    rows = [dict(r) for r in records(events)["students"]]
    live = next(r for r in rows if r["deleted_at"] is None)
    execute(target, "UPDATE students SET deleted_at = CURRENT_TIMESTAMP WHERE student_id = :s",
            s=live["student_id"])  # fmt: skip
    columns = ["student_id", "deleted_at"]
    out = run(target, _csv_events("students", columns, rows), entity="students")
    assert out.status is Status.COMPLETED
    assert scalar(target, "SELECT deleted_at FROM students WHERE student_id = :s",
                  s=live["student_id"]) is None  # fmt: skip


def test_a_new_record_of_a_partial_file_needs_its_required_fields(
    target: Engine, events: list[Event]
) -> None:
    assert run(target, events).status is Status.COMPLETED
    before = checksum(target)
    partial = _csv_events(
        "students",
        ["student_id", "email"],
        [{"student_id": "S99999", "email": "new@example.org"}],
    )
    out = run(target, partial, entity="students")
    assert out.status is Status.FAILED
    [error] = out.errors
    assert (error.entity, error.natural_key, error.field) == ("students", "S99999", "first_name")
    assert "first_name" in error.reason and "last_name" in error.reason
    assert checksum(target) == before


def test_a_file_without_the_natural_key_is_refused(target: Engine, events: list[Event]) -> None:
    assert run(target, events).status is Status.COMPLETED
    before = checksum(target)
    partial = _csv_events("grades", ["student_id", "assessment", "score"],
                          [{"student_id": "S1", "assessment": "Quiz", "score": "3"}])  # fmt: skip
    with pytest.raises(InvalidArgument, match="course_code") as caught:
        run(target, partial, entity="grades")
    assert caught.value.field == "grades.course_code"
    assert checksum(target) == before


def test_a_bundle_record_without_a_field_leaves_it(target: Engine, events: list[Event]) -> None:
    """Bundles too: records without `deleted_at` or `mentor_student_id` (a hand-made
    json bundle) leave them as they are."""
    assert run(target, events).status is Status.COMPLETED
    mentors = dict(_rows(target, "SELECT id, mentor_id FROM students"))
    some = next(r for r in records(events)["students"] if r["deleted_at"] is None)["student_id"]
    execute(target, "UPDATE students SET deleted_at = CURRENT_TIMESTAMP WHERE student_id = :s",
            s=some)  # fmt: skip
    before = checksum(target)
    students = [
        {k: v for k, v in r.items() if k not in ("deleted_at", "mentor_student_id")}
        for r in records(events)["students"]
    ]
    header = next(e for e in events if isinstance(e, Header))
    partial: list[Event] = [header, Batch("students", students), Trailer({})]
    out = run(target, partial)
    assert out.status is Status.COMPLETED
    assert counts(out)["students"] == {"unchanged": len(students)}
    assert dict(_rows(target, "SELECT id, mentor_id FROM students")) == mentors
    assert checksum(target) == before
