"""A semester `replace` stays in its semester (issue 21, item 2): it soft-deletes only
records of that semester (its courses and what hangs under them), never a student, who
is shared between semesters; a student the bundle lacks loses only that semester's
enrollments. The oracle is plain SQL and the other semesters' own exports."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.datasets.school import SCHOOL
from ferry.errors import InvalidArgument
from ferry.merge import Status, undo_import
from ferry.v1 import bundle_pb2 as pb
from tests.merge.helpers import (
    SEMESTER,
    bundle,
    checksum,
    comparable,
    rebuild,
    records,
    run,
    scalar,
)


def _semesters(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT DISTINCT semester FROM courses"))]


def _without_student(events: list[Event], student: str) -> list[Event]:
    """The bundle with every record of `student` left out."""
    out: list[Event] = []
    kept: dict[str, int] = {}
    for e in events:
        if isinstance(e, Batch):
            e = Batch(e.entity, [r for r in e.records if r.get("student_id") != student])
            kept[e.entity] = kept.get(e.entity, 0) + len(e.records)
        elif isinstance(e, Trailer):
            e = Trailer(kept)
        out.append(e)
    return out


def _live_enrollments(engine: Engine, student: str, semester: str, same: bool) -> int:
    op = "=" if same else "<>"
    return int(
        scalar(
            engine,
            "SELECT count(*) FROM enrollments e JOIN students s ON s.id = e.student_ref "
            f"JOIN courses c ON c.id = e.course_ref WHERE s.student_id = :s AND c.semester {op} "
            ":sem AND e.deleted_at IS NULL",
            s=student,
            sem=semester,
        )
    )


def test_replace_without_a_student_keeps_the_student_and_other_semesters(
    source: Engine, target: Engine
) -> None:
    for semester in _semesters(source):
        assert run(target, bundle(source, semester)).status is Status.COMPLETED
    fall = bundle(source, SEMESTER)
    students = {r["student_id"] for r in records(fall)["students"] if r["deleted_at"] is None}
    # A live student of the fall who is also enrolled in another semester.
    student = next(
        s
        for s in sorted(students)
        if _live_enrollments(target, s, SEMESTER, True)
        and _live_enrollments(target, s, SEMESTER, False)
    )
    others = [s for s in _semesters(target) if s != SEMESTER]
    elsewhere = {s: comparable(bundle(target, s)) for s in others}
    before = checksum(target)
    in_other = _live_enrollments(target, student, SEMESTER, False)

    out = run(target, _without_student(fall, student), strategy="replace")
    assert out.status is Status.COMPLETED
    assert scalar(target, "SELECT deleted_at FROM students WHERE student_id = :s",
                  s=student) is None  # fmt: skip
    assert _live_enrollments(target, student, SEMESTER, True) == 0  # the fall's went
    assert _live_enrollments(target, student, SEMESTER, False) == in_other
    summary = {s.entity: s for s in out.summaries}
    assert summary["students"].deleted == 0
    assert summary["enrollments"].deleted >= 1
    assert not any(c.entity == "students" and c.action == "delete" for c in out.sample_changes)
    # Every other semester exports exactly as before: nothing outside the scope moved.
    for semester in others:
        assert comparable(bundle(target, semester)) == elsewhere[semester], semester
    undo_import(target, SCHOOL, out.id)
    assert checksum(target) == before


def test_a_whole_dataset_replace_still_deletes_students_it_lacks(
    source: Engine, target: Engine
) -> None:
    """Scope `all` holds every student: one it lacks is gone there (the shared rule is
    only for a semester's replace)."""
    from ferry.bundle.events import session_events
    from ferry.bundle.scan import SessionRequest

    def whole(engine: Engine) -> list[Event]:
        return list(
            session_events(engine, SCHOOL, SessionRequest("", include_deleted=True, scope="all"))
        )

    assert run(target, whole(source)).status is Status.COMPLETED
    student = next(r for r in records(whole(source))["students"] if r["deleted_at"] is None)
    out = run(target, _without_student(whole(source), student["student_id"]), strategy="replace")
    assert out.status is Status.COMPLETED
    assert scalar(target, "SELECT deleted_at FROM students WHERE student_id = :s",
                  s=student["student_id"]) is not None  # fmt: skip


# ---- the header is checked against the records (item 3) ----------------------------


def _relabelled(events: list[Event], semester: str) -> list[Event]:
    """The bundle with its header saying `semester` (its records unchanged)."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Header):
            meta = pb.BundleMetadata()
            meta.CopyFrom(e.metadata)
            meta.semester = semester
            e = Header(meta, e.updated_since)
        out.append(e)
    return out


SPRING = "2026-spring"


@pytest.mark.parametrize("strategy", ["update", "skip", "update_only", "replace"])
def test_a_header_naming_another_semester_is_refused(
    source: Engine, target: Engine, strategy: str
) -> None:
    for semester in (SPRING, SEMESTER):
        assert run(target, bundle(source, semester)).status is Status.COMPLETED
    before = checksum(target)
    lying = _relabelled(bundle(source, SEMESTER), SPRING)
    first = records(lying)["courses"][0]["course_code"]
    with pytest.raises(InvalidArgument) as caught:
        run(target, lying, strategy=strategy)
    message = caught.value.message
    assert f"courses record 1 ({first})" in message
    assert SEMESTER in message and SPRING in message
    assert caught.value.field == "courses[1].semester"
    assert checksum(target) == before  # nothing created, changed or soft-deleted
    assert scalar(target, "SELECT count(*) FROM imports WHERE status = 'completed'") == 2


def test_a_record_under_a_parent_of_another_semester_is_refused(
    source: Engine, target: Engine
) -> None:
    """The fall's courses, but one enrollment (and its grades) of a spring course that
    the database holds: refused, naming the enrollment and both semesters."""
    for semester in (SPRING, SEMESTER):
        assert run(target, bundle(source, semester)).status is Status.COMPLETED
    before = checksum(target)
    spring = records(bundle(source, SPRING))
    stray = spring["enrollments"][0]
    by = copy.deepcopy(records(bundle(source, SEMESTER)))
    by["enrollments"].append(stray)
    if not any(s["student_id"] == stray["student_id"] for s in by["students"]):
        by["students"].append(
            next(s for s in spring["students"] if s["student_id"] == stray["student_id"])
        )
    with pytest.raises(InvalidArgument) as caught:
        run(target, rebuild(by), strategy="replace")
    message = caught.value.message
    assert f"{stray['student_id']}/{stray['course_code']}" in message
    assert SPRING in message and SEMESTER in message
    assert caught.value.field.startswith("enrollments[")
    assert checksum(target) == before


@pytest.mark.parametrize("strategy", ["update", "skip", "update_only", "replace"])
def test_a_grade_under_an_enrollment_of_another_semester_is_refused(
    source: Engine, target: Engine, strategy: str
) -> None:
    """Two levels down: the fall's records plus one grade whose enrollment (held by the
    database, not carried by the bundle) is of a spring course. The grade's semester is
    its enrollment's course's: refused for every strategy, naming the grade and both
    semesters, nothing changed."""
    for semester in (SPRING, SEMESTER):
        assert run(target, bundle(source, semester)).status is Status.COMPLETED
    before = checksum(target)
    stray = copy.deepcopy(records(bundle(source, SPRING))["grades"][0])
    stray["assessment"] = "stray " + stray["assessment"]  # a new grade, not an existing one
    by = copy.deepcopy(records(bundle(source, SEMESTER)))
    by["grades"].append(stray)
    with pytest.raises(InvalidArgument) as caught:
        run(target, rebuild(by), strategy=strategy)
    message = caught.value.message
    assert f"{stray['student_id']}/{stray['course_code']}/{stray['assessment']}" in message
    assert "its enrollments record is of " + SPRING in message
    assert SEMESTER in message
    assert caught.value.field == f"grades[{len(by['grades'])}].student_id,course_code"
    assert checksum(target) == before
