"""The semester report: every course of a semester, the grade distribution, and the
students at risk (each reason named), from a handful of grouped queries."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.db.models import (
    Attendance,
    Course,
    DailyPerformance,
    Enrollment,
    Grade,
    Highlight,
    Student,
)
from ferry.errors import InvalidArgument, NotFound
from ferry.reports import compute as c
from ferry.reports.scope import mine
from ferry.reports.settings import ReportSettings
from ferry.reports.student import counts_enrolment, scale_pb
from ferry.reports.words import LANGUAGES, REASONS, SEMESTER_POLICY
from ferry.v1 import reports_pb2 as pb

_KIND_RANK = {"award": 0, "achievement": 1}


def _num(x: float) -> str:
    return f"{c.r2(x):g}"


def reason_text(
    reason: str, overall: float, rate: float, slope: float, settings: ReportSettings, lang: str
) -> str:
    """A risk reason in words of `lang`, with the student's value and the threshold."""
    risk = settings.risk
    value, limit = {
        "low_grade": (overall, risk.min_percent),
        "low_attendance": (rate, risk.min_attendance_rate),
        "falling_trend": (slope, risk.falling_trend_per_week),
    }[reason]
    return REASONS[lang][reason].format(value=_num(value), limit=_num(limit))


def check_language(language: str, field: str = "language") -> str:
    lang = (language or "en").strip().lower()
    if lang not in LANGUAGES:
        raise InvalidArgument(
            f"unknown {field} {language!r}; known: {', '.join(LANGUAGES)}",
            field=field,
            reason="UNKNOWN_LANGUAGE",
            metadata={"value": language, "known": ", ".join(LANGUAGES)},
        )
    return lang


def semester_report(
    conn: Connection, settings: ReportSettings, semester: str, language: str = "en"
) -> pb.SemesterReport:
    language = check_language(language)
    semester = semester.strip()
    if not semester:
        raise InvalidArgument("semester is required", field="semester")
    if len(semester) > 32:
        raise InvalidArgument("semester is longer than 32 characters", field="semester")
    courses = conn.execute(
        sa.select(Course.id, Course.course_code, Course.title, Course.teacher, Course.credits)
        .where(Course.semester == semester, Course.deleted_at.is_(None), *mine(Course))
        .order_by(Course.course_code)
    ).all()
    if not courses:
        raise NotFound(f"semester {semester!r} has no courses", field="semester")
    # A row counts only when it and every parent it hangs from are live: the enrolment,
    # its course and its student (and, below, the grade, day or mark itself).
    live = sa.and_(
        Course.semester == semester,
        Course.deleted_at.is_(None),
        Enrollment.deleted_at.is_(None),
        Student.deleted_at.is_(None),
        *mine(Course, Enrollment, Student),
    )

    def enrolments(*cols: Any) -> Any:
        return (
            sa.select(*cols)
            .select_from(Enrollment)
            .join(Course, Course.id == Enrollment.course_ref)
            .join(Student, Student.id == Enrollment.student_ref)
        )

    enrolled: dict[int, int] = defaultdict(int)
    withdrawn: dict[int, int] = defaultdict(int)
    students: dict[int, tuple[str, str]] = {}
    for cid, sref, sid, first, last, status in conn.execute(
        enrolments(
            Enrollment.course_ref,
            Enrollment.student_ref,
            Student.student_id,
            Student.first_name,
            Student.last_name,
            Enrollment.status,
        ).where(live)
    ):
        if (status or "") in c.WITHDRAWN:
            withdrawn[cid] += 1
        else:
            enrolled[cid] += 1
        students[sref] = (sid, f"{first} {last}")
    ok = sa.and_(Grade.max_score > 0, Grade.weight > 0)
    pct: dict[int, list[float]] = defaultdict(list)  # per course
    per_student: dict[int, list[tuple[float, float]]] = defaultdict(list)  # (pct, credits)
    credits = {r.id: r.credits or 0 for r in courses}
    for cid, sref, num, den in conn.execute(
        enrolments(
            Enrollment.course_ref,
            Enrollment.student_ref,
            sa.func.sum(sa.case((ok, Grade.score / Grade.max_score * Grade.weight))),
            sa.func.sum(sa.case((ok, Grade.weight))),
        )
        .join(Grade, Grade.enrollment_ref == Enrollment.id)
        .where(live, Grade.deleted_at.is_(None), counts_enrolment(), *mine(Grade))
        .group_by(Enrollment.course_ref, Enrollment.student_ref, Enrollment.id)
    ):
        if den:
            p = float(num) / float(den) * 100
            pct[cid].append(p)
            per_student[sref].append((p, float(credits[cid])))
    att_course: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    att_student: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cid, sref, status, n in conn.execute(
        enrolments(
            Enrollment.course_ref, Enrollment.student_ref, Attendance.status, sa.func.count()
        )
        .join(Attendance, Attendance.enrollment_ref == Enrollment.id)
        .where(live, Attendance.deleted_at.is_(None), *mine(Attendance))
        .group_by(Enrollment.course_ref, Enrollment.student_ref, Attendance.status)
    ):
        att_course[cid][status] += int(n)
        att_student[sref][status] += int(n)
    perf: dict[int, list[tuple[dt.date, float]]] = defaultdict(list)
    for sref, day, score in conn.execute(
        enrolments(Enrollment.student_ref, DailyPerformance.date, DailyPerformance.score)
        .join(DailyPerformance, DailyPerformance.enrollment_ref == Enrollment.id)
        .where(live, DailyPerformance.deleted_at.is_(None), *mine(DailyPerformance))
    ):
        perf[sref].append((day, float(score)))

    report = pb.SemesterReport(
        semester=semester,
        grading_scale=scale_pb(settings),
        language=language,
        policy=SEMESTER_POLICY[language].format(weeks=settings.risk.min_trend_weeks),
    )
    risk = settings.risk
    report.thresholds.min_percent = risk.min_percent
    report.thresholds.min_attendance_rate = risk.min_attendance_rate
    report.thresholds.falling_trend_per_week = risk.falling_trend_per_week
    report.thresholds.min_trend_weeks = risk.min_trend_weeks
    letters = [b.letter for b in settings.grading_scale]
    total_dist: dict[str, int] = defaultdict(int)
    all_pct: list[float] = []
    att_total: dict[str, int] = defaultdict(int)
    for row in courses:
        vals = pct.get(row.id, [])
        dist: dict[str, int] = defaultdict(int)
        for v in vals:
            dist[settings.band(c.r2(v)).letter] += 1
        for k, n in dist.items():
            total_dist[k] += n
        all_pct += vals
        counts = att_course.get(row.id, {})
        for k, n in counts.items():
            att_total[k] += n
        report.courses.add(
            course_code=row.course_code,
            title=row.title,
            teacher=row.teacher or "",
            credits=row.credits or 0,
            enrolled=enrolled.get(row.id, 0),
            withdrawn=withdrawn.get(row.id, 0),
            graded=len(vals),
            average=c.r2(sum(vals) / len(vals)) if vals else 0.0,
            distribution=[pb.LetterCount(letter=x, count=dist.get(x, 0)) for x in letters],
            attendance_rate=c.r2(c.attendance_rate(counts, settings.attended_statuses)),
            attendance_days=sum(counts.values()),
        )
    report.student_count = len(students)
    report.average = c.r2(sum(all_pct) / len(all_pct)) if all_pct else 0.0
    report.attendance_rate = c.r2(c.attendance_rate(att_total, settings.attended_statuses))
    report.distribution.extend(
        pb.LetterCount(letter=x, count=total_dist.get(x, 0)) for x in letters
    )
    at_risk = []
    for sref, (sid, name) in students.items():
        reasons = []
        overall = c.weighted_mean(per_student.get(sref, []))
        if overall is not None and c.r2(overall) < risk.min_percent:
            reasons.append("low_grade")
        counts = att_student.get(sref, {})
        rate = c.attendance_rate(counts, settings.attended_statuses)
        if counts and c.r2(rate) < risk.min_attendance_rate:
            reasons.append("low_attendance")
        label, slope = c.trend(sorted(perf.get(sref, [])), settings)
        if label == "falling":
            reasons.append("falling_trend")
        if reasons:
            at_risk.append(
                pb.AtRiskStudent(
                    student_id=sid,
                    name=name,
                    overall_percent=c.r2(overall or 0.0),
                    graded=overall is not None,
                    attendance_rate=c.r2(rate),
                    trend_per_week=c.r2(slope),
                    reasons=reasons,
                    reason_texts=[
                        reason_text(x, overall or 0.0, rate, slope, settings, language)
                        for x in reasons
                    ],
                )
            )
    # Most reasons first, then the lowest grade, then the id: a stable order.
    at_risk.sort(key=lambda a: (-len(a.reasons), a.overall_percent, a.student_id))
    report.at_risk.extend(at_risk)
    if settings.highlights_limit:
        rank = sa.case(_KIND_RANK, value=Highlight.kind, else_=2)
        for h in conn.execute(
            sa.select(
                Highlight.title,
                Highlight.description,
                Highlight.kind,
                Student.student_id,
                Student.first_name,
                Student.last_name,
            )
            .join(Student, Student.id == Highlight.student_ref)
            .where(
                Highlight.semester == semester,
                Highlight.deleted_at.is_(None),
                Student.deleted_at.is_(None),
                *mine(Highlight, Student),
            )
            .order_by(rank, Highlight.title, Student.student_id)
            .limit(settings.highlights_limit)
        ):
            report.highlights.add(
                semester=semester,
                title=h.title,
                description=h.description or "",
                kind=h.kind or "",
                student_id=h.student_id,
                student_name=f"{h.first_name} {h.last_name}",
            )
    return report
