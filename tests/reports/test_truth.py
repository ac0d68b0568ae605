"""The issue's reproductions on the hand-computed school (helpers.py): soft-deleted
parents, a trend from two marks, reasons in words, a dropped course, an empty report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db.engine import make_engine
from ferry.db.models import Attendance, DailyPerformance, Enrollment, Student
from ferry.reports.render import to_dict
from ferry.reports.semester import semester_report
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope, student_report
from tests.reports.helpers import SEM

SETTINGS = ReportSettings()
GONE = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _sref(conn: Any, sid: str) -> int:
    return int(conn.execute(sa.select(Student.id).where(Student.student_id == sid)).scalar_one())


def _enrolment(conn: Any, sid: str, code: str) -> int:
    from ferry.db.models import Course

    return int(
        conn.execute(
            sa.select(Enrollment.id)
            .join(Course, Course.id == Enrollment.course_ref)
            .where(Enrollment.student_ref == _sref(conn, sid), Course.course_code == code)
        ).scalar_one()
    )


def _db(url: str) -> Engine:
    return make_engine(url)


def test_a_soft_deleted_student_never_counts(school_url: str) -> None:
    db = _db(school_url)
    with db.begin() as conn:
        conn.execute(sa.update(Student).where(Student.student_id == "S5").values(deleted_at=GONE))
        # S5's absences in MATH would lower its attendance rate if they counted.
        e5 = _enrolment(conn, "S5", "MATH")
        for day in range(1, 6):
            conn.execute(
                sa.insert(Attendance).values(
                    enrollment_ref=e5, date=dt.date(2026, 9, day), status="absent"
                )
            )
    with db.connect() as conn:
        math = next(c for c in student_report(conn, SETTINGS, "S1", Scope()).courses
                    if c.course_code == "MATH")  # fmt: skip
        sem = semester_report(conn, SETTINGS, SEM)
    db.dispose()
    # Four live graded students: the privacy threshold hides the class average.
    assert math.class_size == 4 and not math.has_class_average and math.class_average == 0
    m = next(c for c in sem.courses if c.course_code == "MATH")
    assert (m.enrolled, m.graded) == (4, 4)
    assert m.average == round((87.5 + 70 + 80 + 90) / 4, 2)
    # S1's five days only (3 present + 1 late): S5's absences do not count.
    assert (m.attendance_days, m.attendance_rate) == (5, 80.0)
    assert sem.student_count == 4 and "S5" not in {a.student_id for a in sem.at_risk}


def test_two_marks_are_not_a_trend_nor_a_risk(school_url: str) -> None:
    """Two daily marks three days apart in different courses: not enough data, never a
    falling trend of -4.67 a week, never a reason."""
    db = _db(school_url)
    with db.begin() as conn:
        for code, day, score in [("MATH", 7, 4.0), ("ART", 10, 2.0)]:
            conn.execute(
                sa.insert(DailyPerformance).values(
                    enrollment_ref=_enrolment(conn, "S2", code),
                    date=dt.date(2026, 9, day),
                    category="participation",
                    score=score,
                )
            )
    with db.connect() as conn:
        r = student_report(conn, SETTINGS, "S2", Scope())
        sem = semester_report(conn, SETTINGS, SEM)
    db.dispose()
    assert (r.performance.trend, r.performance.trend_per_week) == ("not_enough_data", 0.0)
    assert [w.week for w in r.performance.weekly] == ["2026-09-07"]  # one week, one point
    assert "S2" not in {a.student_id for a in sem.at_risk}
    # S1's marks in three weeks (4, 3, 2) are a falling trend, in words.
    s1 = next(a for a in sem.at_risk if a.student_id == "S1")
    assert list(s1.reasons) == ["falling_trend"]
    assert list(s1.reason_texts) == ["falling trend -1 points/week ≤ -0.25"]


def test_reasons_are_words_with_their_thresholds_in_the_reports_language(
    school_url: str,
) -> None:
    strict = ReportSettings.model_validate({"risk": {"min_percent": 75}})
    db = _db(school_url)
    with db.connect() as conn:
        en = semester_report(conn, strict, SEM, "en")
        el = semester_report(conn, strict, SEM, "el")
    db.dispose()
    # S2: (70% * 4 + 50% * 2) / 6 = 63.33%; S5: 60%.
    assert {a.student_id: list(a.reason_texts) for a in en.at_risk if a.student_id != "S1"} == {
        "S2": ["grade 63.33% < 75%"],
        "S5": ["grade 60% < 75%"],
    }
    assert next(a for a in el.at_risk if a.student_id == "S2").reason_texts == [
        "βαθμός 63.33% < 75%"
    ]
    assert en.language == "en" and el.language == "el" and el.policy != en.policy


def test_a_dropped_course_is_w_and_out_of_the_gpa(school_url: str) -> None:
    db = _db(school_url)
    with db.begin() as conn:
        conn.execute(
            sa.update(Enrollment)
            .where(Enrollment.id == _enrolment(conn, "S1", "ART"))
            .values(status="dropped")
        )
    with db.connect() as conn:
        r = student_report(conn, SETTINGS, "S1", Scope())
        sem = semester_report(conn, SETTINGS, SEM)
    db.dispose()
    art, _math = r.courses
    assert (art.letter, art.withdrawn, art.graded) == ("W", True, False)
    assert [a.assessment for a in art.assessments] == ["Project"]  # still shown
    # Only MATH counts: 87.5% -> B (3.0), 4 credits.
    assert (r.overall_percent, r.gpa, r.credits_attempted, r.credits_earned) == (87.5, 3.0, 4, 4)
    assert "W" in r.policy and "GPA" in r.policy
    a = next(c for c in sem.courses if c.course_code == "ART")
    assert (a.enrolled, a.withdrawn, a.graded, a.average) == (1, 1, 1, 50.0)


def test_an_empty_report_has_every_section(school_url: str) -> None:
    db = _db(school_url)
    with db.connect() as conn:
        r = student_report(conn, SETTINGS, "S6", Scope())
    db.dispose()
    d = to_dict(r)
    assert d["empty"] is True and d["note"]
    assert d["courses"] == [] and d["highlights"] == []
    assert d["attendance"] == {"counts": [], "total": "0", "rate": 0.0}
    assert d["performance"]["weekly"] == [] and d["performance"]["trend"] == "not_enough_data"
    assert [b["letter"] for b in d["grading_scale"]] == ["A", "B", "C", "D", "F"]
