"""Class reports take a semester: a course's class reports cover the course's semester
unless a semester or date range is given, and the file name says which."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from ferry.db.engine import make_engine
from ferry.db.models import Course, Enrollment, Grade, Student
from ferry.reports.bulk import bulk
from ferry.reports.engine import ReportEngine
from ferry.v1 import reports_pb2 as pb
from tests.reports.helpers import SEM

OLD = "2025-fall"


def _old_history(url: str) -> None:
    """S1 also took a course a year earlier."""
    db = make_engine(url)
    with db.begin() as conn:
        cid = conn.execute(
            sa.insert(Course).values(course_code="OLD", semester=OLD, title="Old", credits=3)
        ).inserted_primary_key[0]
        sref = conn.execute(sa.select(Student.id).where(Student.student_id == "S1")).scalar()
        eid = conn.execute(
            sa.insert(Enrollment).values(student_ref=sref, course_ref=cid)
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(Grade).values(
                enrollment_ref=eid,
                assessment="Exam",
                score=10,
                max_score=100,
                weight=1,
                graded_on=dt.date(2025, 10, 1),
            )
        )
    db.dispose()


def _semesters(f_data: bytes) -> set[str]:
    doc = json.loads(f_data)
    return {c["semester"] for r in doc["reports"] for c in r["courses"]}


def test_a_class_report_covers_its_course_semester(engine: ReportEngine, school_url: str) -> None:
    _old_history(school_url)
    f = bulk(engine, pb.BulkStudentReportsRequest(course_code="MATH", output="json"))
    assert _semesters(f.data) == {SEM}  # not S1's whole history
    assert f.filename == f"student_reports_MATH_{SEM}_en.json"
    s1 = next(r for r in json.loads(f.data)["reports"] if r["student_id"] == "S1")
    assert s1["semester"] == SEM and s1["gpa"] == 3.33  # the 10% of 2025 is not in it
    # A semester or a range given is used as it is.
    other = pb.BulkStudentReportsRequest(course_code="MATH", output="json", semester=OLD)
    f = bulk(engine, other)
    assert f.filename == f"student_reports_MATH_{OLD}_en.json"
    assert _semesters(f.data) == {OLD}
    ranged = pb.BulkStudentReportsRequest(
        course_code="MATH", output="json", date_from="2025-01-01", date_to="2026-12-31"
    )
    assert _semesters(bulk(engine, ranged).data) == {SEM, OLD}
    # Listed students keep the whole history unless told otherwise.
    listed = bulk(engine, pb.BulkStudentReportsRequest(student_ids=["S1"], output="json"))
    assert _semesters(listed.data) == {SEM, OLD}
    assert listed.filename == "student_reports_1_students_all_en.json"


def test_the_cli_states_the_default_semester() -> None:
    from click.testing import CliRunner

    from ferry.cli.main import cli

    r = CliRunner().invoke(cli, ["report", "bulk", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "Default: with --course, the course's semester" in text
