"""Edge cases for the oracle, added to a database (the small demo data or empty): soft-
deleted students, courses, enrolments, grades, days and marks; classes of 4, 5 and 6
graded students; zero weights and zero max scores; withdrawn and dropped enrolments; a
course moved between semesters; trends with too little evidence and enough."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db.models import (
    Attendance,
    Course,
    DailyPerformance,
    Enrollment,
    Grade,
    Highlight,
    Student,
)

EDGE = "2027-spring"
MOVED_TO = "2026-fall"
GONE = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
D = dt.date


def _ins(conn: Any, model: Any, **values: Any) -> int:
    return int(conn.execute(sa.insert(model).values(**values)).inserted_primary_key[0])


def build_edges(engine: Engine) -> dict[str, int]:
    ids: dict[str, int] = {}
    with engine.begin() as conn:

        def course(code: str, credits: int = 3, deleted: bool = False) -> int:
            ids[code] = _ins(
                conn,
                Course,
                course_code=code,
                semester=EDGE,
                title=f"Edge {code}",
                credits=credits,
                teacher="Edge Teacher",
                deleted_at=GONE if deleted else None,
            )
            return ids[code]

        for i in range(1, 13):
            sid = f"E{i:02d}"
            ids[sid] = _ins(
                conn,
                Student,
                student_id=sid,
                first_name="Edge",
                last_name=f"Στ{i}",
                year_level=11,
                deleted_at=GONE if sid == "E05" else None,
            )

        def enrol(sid: str, cid: int, status: str = "enrolled", deleted: bool = False) -> int:
            return _ins(
                conn,
                Enrollment,
                student_ref=ids[sid],
                course_ref=cid,
                status=status,
                deleted_at=GONE if deleted else None,
            )

        def grade(eid: int, name: str, score: float, mx: float = 100, w: float = 1, **kw: Any):
            _ins(
                conn,
                Grade,
                enrollment_ref=eid,
                assessment=name,
                score=score,
                max_score=mx,
                weight=w,
                graded_on=kw.pop("on", D(2027, 2, 10)),
                **kw,
            )

        # K4: four live graded students and a graded, soft-deleted fifth (E05): no average.
        k4 = course("K4")
        for n, sid in enumerate(["E01", "E02", "E03", "E04", "E05"]):
            e = enrol(sid, k4)
            ids[f"{sid}/K4"] = e
            grade(e, "Exam", 50 + 10 * n)
        # K5: exactly five live graded students.
        k5 = course("K5", credits=4)
        for n, sid in enumerate(["E06", "E07", "E08", "E09", "E02"]):
            e = enrol(sid, k5)
            ids[f"{sid}/K5"] = e
            grade(e, "Exam", 40 + 11 * n, w=2)
            grade(e, "Quiz", 7, mx=10)
        enrol("E11", k5)  # enrolled, nothing graded
        # K6: six graded, one enrolment soft-deleted, one whose grades are all deleted.
        k6 = course("K6", credits=2)
        for n, sid in enumerate(["E01", "E02", "E03", "E04", "E06", "E07"]):
            e = enrol(sid, k6, deleted=sid == "E07")
            grade(e, "Essay", 30 + 12 * n, mx=50)
        e = enrol("E08", k6)
        grade(e, "Essay", 49, mx=50, deleted_at=GONE)
        # KZ: zero weights and zero max scores (never count); zero credits.
        kz = course("KZ", credits=0)
        e = enrol("E01", kz)
        grade(e, "Zero weight", 10, w=0)
        e = enrol("E02", kz)
        grade(e, "Zero max", 5, mx=0)
        e = enrol("E03", kz)
        grade(e, "Zero weight", 0, w=0)
        grade(e, "Counted", 88)
        # KW: dropped and withdrawn enrolments with low grades: W, out of every average.
        kw = course("KW")
        for n, sid in enumerate(["E03", "E04", "E06", "E07", "E08"]):
            grade(enrol(sid, kw), "Final", 70 + 5 * n)
        e = enrol("E01", kw, status="dropped")
        ids["E01/KW"] = e
        grade(e, "Final", 5)
        grade(enrol("E02", kw, status="withdrawn"), "Final", 10)
        # KD: a soft-deleted course: nothing of it counts anywhere.
        kd = course("KD", deleted=True)
        for sid in ["E01", "E02", "E03", "E04", "E06"]:
            e = enrol(sid, kd)
            grade(e, "Exam", 1)
            _ins(conn, Attendance, enrollment_ref=e, date=D(2027, 2, 1), status="absent")
        # KM: a course moved to another semester after its grades were in.
        km = course("KM", credits=5)
        for n, sid in enumerate(["E01", "E03", "E06", "E08", "E09", "E12"]):
            grade(enrol(sid, km), "Exam", 55 + 8 * n)
        conn.execute(sa.update(Course).where(Course.id == km).values(semester=MOVED_TO))
        # Attendance: E01 attends 7 of 10 (deleted absences would make it worse); E05,
        # soft-deleted, missed everything (must not lower K4's rate).
        for day in range(10):
            status = "present" if day < 7 else "absent"
            _ins(
                conn,
                Attendance,
                enrollment_ref=ids["E01/K4"],
                date=D(2027, 2, 1) + dt.timedelta(days=day),
                status=status,
            )
            _ins(
                conn,
                Attendance,
                enrollment_ref=ids["E05/K4"],
                date=D(2027, 2, 1) + dt.timedelta(days=day),
                status="absent",
            )
        for day in range(10, 14):
            _ins(
                conn,
                Attendance,
                enrollment_ref=ids["E01/K4"],
                date=D(2027, 2, 1) + dt.timedelta(days=day),
                status="absent",
                deleted_at=GONE,
            )
        _ins(conn, Attendance, enrollment_ref=ids["E02/K4"], date=D(2027, 2, 2), status="late")

        def mark(eid: int, day: dt.date, score: float, deleted: bool = False) -> None:
            _ins(
                conn,
                DailyPerformance,
                enrollment_ref=eid,
                date=day,
                category="participation",
                score=score,
                deleted_at=GONE if deleted else None,
            )

        # E02: two marks three days apart in two courses, falling: not enough data.
        mark(ids["E02/K4"], D(2027, 2, 3), 4.0)
        mark(ids["E02/K5"], D(2027, 2, 6), 2.0)
        # E03: three weeks falling: a falling trend (a reason).
        for n, day in enumerate([D(2027, 2, 1), D(2027, 2, 9), D(2027, 2, 17)]):
            mark(ids["E03/K4"], day, 5.0 - n)
        # E04: three marks in two weeks, a third week's mark deleted: not enough data.
        mark(ids["E04/K4"], D(2027, 2, 1), 5.0)
        mark(ids["E04/K4"], D(2027, 2, 5), 4.0)
        mark(ids["E04/K4"], D(2027, 2, 9), 1.0)
        mark(ids["E04/K4"], D(2027, 2, 17), 1.0, deleted=True)
        # E01: marks in a dropped course still show (and trend) but grades do not count.
        for n, day in enumerate([D(2027, 2, 1), D(2027, 2, 8), D(2027, 2, 15)]):
            mark(ids["E01/KW"], day, 2.0 + n)
        for sid, title, deleted in [
            ("E01", "Edge award", False),
            ("E01", "Edge deleted", True),
            ("E05", "Edge award of a deleted student", False),
        ]:
            _ins(
                conn,
                Highlight,
                student_ref=ids[sid],
                semester=EDGE,
                title=title,
                kind="award",
                deleted_at=GONE if deleted else None,
            )
    return ids
