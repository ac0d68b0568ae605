"""The student report: what one student did in a semester, a date range, or ever.

Four indexed queries per report (the student and courses, the student's marks, attendance
and performance, the class sums of the same courses), then arithmetic in compute.py.
Soft-deleted rows never count.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
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
from ferry.reports.words import ANY_DAY, EMPTY_NOTE, STUDENT_POLICY
from ferry.v1 import reports_pb2 as pb


@dataclass(frozen=True)
class Scope:
    """What a report covers: a semester, a date range, or (both empty) everything."""

    semester: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    @property
    def label(self) -> str:
        if self.semester:
            return self.semester
        if self.date_from or self.date_to:
            return f"{self.date_from or '…'} - {self.date_to or '…'}"
        return "all"

    def key(self) -> str:
        return f"{self.semester}|{self.date_from or ''}|{self.date_to or ''}"


def _date(value: str, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} {value!r} is not a date (YYYY-MM-DD)", field=field
        ) from None


def parse_scope(semester: str, date_from: str, date_to: str, prefix: str = "") -> Scope:
    """The scope of a request; INVALID_ARGUMENT names the field."""
    lo = _date(date_from, prefix + "date_from")
    hi = _date(date_to, prefix + "date_to")
    if semester and (lo or hi):
        raise InvalidArgument(
            "give a semester or a date range, not both", field=prefix + "semester"
        )
    if lo and hi and lo > hi:
        raise InvalidArgument(f"date_from {lo} is after date_to {hi}", field=prefix + "date_from")
    if len(semester) > 32:
        raise InvalidArgument("semester is longer than 32 characters", field=prefix + "semester")
    return Scope(semester, lo, hi)


def check_student_id(student_id: str, field: str = "student_id") -> str:
    sid = student_id.strip()
    if not sid:
        raise InvalidArgument(f"{field} is required", field=field)
    if len(sid) > 64:
        raise InvalidArgument(f"{field} is longer than 64 characters", field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in sid):
        raise InvalidArgument(f"{field} contains a control character", field=field)
    return sid


def _in_range(col: Any, scope: Scope) -> list[Any]:
    out = []
    if scope.date_from:
        out.append(col >= scope.date_from)
    if scope.date_to:
        out.append(col <= scope.date_to)
    return out


def counts_enrolment() -> Any:
    """SQL: the enrolment counts in averages, GPA and credits (it is not withdrawn or
    dropped; those are shown as W and left out, compute.WITHDRAWN)."""
    return sa.func.coalesce(Enrollment.status, "").notin_(c.WITHDRAWN)


def scale_pb(settings: ReportSettings) -> list[pb.GradeBand]:
    return [
        pb.GradeBand(letter=b.letter, min_percent=b.min_percent, points=b.points)
        for b in settings.grading_scale
    ]


def student_report(
    conn: Connection,
    settings: ReportSettings,
    student_id: str,
    scope: Scope,
    language: str = "en",
) -> pb.StudentReport:
    """The report of `student_id` over `scope`, its words in `language` (en, el: checked
    by the caller); NotFound for an unknown student."""
    st = conn.execute(
        sa.select(
            Student.id, Student.first_name, Student.last_name, Student.year_level, Student.status
        ).where(Student.student_id == student_id, Student.deleted_at.is_(None), *mine(Student))
    ).first()
    if st is None:
        raise NotFound(f"student {student_id!r} does not exist", field="student_id")
    sref = st.id
    where = [
        Enrollment.student_ref == sref,
        Enrollment.deleted_at.is_(None),
        Course.deleted_at.is_(None),
        *mine(Enrollment, Course),
    ]
    if scope.semester:
        where.append(Course.semester == scope.semester)
    enr = conn.execute(
        sa.select(
            Enrollment.id,
            Enrollment.status,
            Course.id.label("cid"),
            Course.course_code,
            Course.title,
            Course.semester,
            Course.teacher,
            Course.credits,
        )
        .join(Course, Course.id == Enrollment.course_ref)
        .where(*where)
        .order_by(Course.semester, Course.course_code)
    ).all()
    eids = [e.id for e in enr]
    grades: dict[int, list[Any]] = defaultdict(list)
    att: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    perf: dict[int, list[tuple[dt.date, float]]] = defaultdict(list)
    days: list[dt.date] = []
    if eids:
        for g in conn.execute(
            sa.select(
                Grade.enrollment_ref,
                Grade.assessment,
                Grade.score,
                Grade.max_score,
                Grade.weight,
                Grade.graded_on,
                Grade.comment,
            )
            .where(
                Grade.enrollment_ref.in_(eids),
                Grade.deleted_at.is_(None),
                *_in_range(Grade.graded_on, scope),
                *mine(Grade),
            )
            .order_by(Grade.enrollment_ref, Grade.graded_on, Grade.assessment)
        ):
            grades[g.enrollment_ref].append(g)
            if g.graded_on:
                days.append(g.graded_on)
        for a in conn.execute(
            sa.select(
                Attendance.enrollment_ref,
                Attendance.status,
                sa.func.count(),
                sa.func.min(Attendance.date),
                sa.func.max(Attendance.date),
            )
            .where(
                Attendance.enrollment_ref.in_(eids),
                Attendance.deleted_at.is_(None),
                *_in_range(Attendance.date, scope),
                *mine(Attendance),
            )
            .group_by(Attendance.enrollment_ref, Attendance.status)
        ):
            att[a[0]][a[1]] = int(a[2])
            days += [a[3], a[4]]
        for p in conn.execute(
            sa.select(
                DailyPerformance.enrollment_ref, DailyPerformance.date, DailyPerformance.score
            )
            .where(
                DailyPerformance.enrollment_ref.in_(eids),
                DailyPerformance.deleted_at.is_(None),
                *_in_range(DailyPerformance.date, scope),
                *mine(DailyPerformance),
            )
            .order_by(DailyPerformance.date, DailyPerformance.score)
        ):
            perf[p.enrollment_ref].append((p.date, float(p.score)))
            days.append(p.date)
    dated = bool(scope.date_from or scope.date_to)
    if dated:  # a date range shows only the courses with something in it
        enr = [e for e in enr if grades.get(e.id) or att.get(e.id) or perf.get(e.id)]
    averages = class_averages(conn, [e.cid for e in enr], scope, settings)

    report = pb.StudentReport(
        student_id=student_id,
        first_name=st.first_name,
        last_name=st.last_name,
        year_level=st.year_level or 0,
        status=st.status or "",
        semester=scope.semester,
        date_from=str(scope.date_from or ""),
        date_to=str(scope.date_to or ""),
        grading_scale=scale_pb(settings),
        policy=STUDENT_POLICY[language],
        language=language,
        min_class_size=settings.class_size,
    )
    # Every section is there even when empty (the page reads them all).
    report.attendance.SetInParent()
    report.performance.SetInParent()
    totals: dict[str, int] = defaultdict(int)
    all_perf: list[tuple[dt.date, float]] = []
    overall: list[tuple[float, float]] = []
    gpa: list[tuple[float, float]] = []
    for e in enr:
        course = report.courses.add(
            course_code=e.course_code,
            title=e.title,
            semester=e.semester,
            teacher=e.teacher or "",
            credits=e.credits or 0,
            status=e.status or "",
            withdrawn=(e.status or "") in c.WITHDRAWN,
        )
        course.attendance.SetInParent()
        course.performance.SetInParent()
        marks = []
        for g in grades.get(e.id, []):
            m = c.Mark(float(g.score), float(g.max_score), float(g.weight))
            marks.append(m)
            course.assessments.add(
                assessment=g.assessment,
                score=g.score,
                max_score=g.max_score,
                weight=g.weight,
                percent=c.r2(g.score / g.max_score * 100) if g.max_score else 0.0,
                graded_on=str(g.graded_on or ""),
                comment=g.comment or "",
            )
        pct = c.weighted_percent(marks)
        if course.withdrawn:
            course.letter = c.WITHDRAWN_LETTER
        elif pct is not None:
            band = settings.band(c.r2(pct))
            course.graded = True
            course.weighted_percent = c.r2(pct)
            course.letter = band.letter
            course.points = band.points
            overall.append((pct, float(course.credits)))
            gpa.append((band.points, float(course.credits)))
            report.credits_attempted += course.credits
            if band.points > 0:
                report.credits_earned += course.credits
        avg = averages.get(e.cid)
        if avg is not None:
            course.class_size = avg[1]
            if avg[0] is not None:
                course.has_class_average = True
                course.class_average = c.r2(avg[0])
        counts = att.get(e.id, {})
        _attendance(course.attendance, counts, settings)
        for k, v in counts.items():
            totals[k] += v
        points = perf.get(e.id, [])
        _performance(course.performance, points, settings)
        all_perf += points
    _attendance(report.attendance, totals, settings)
    _performance(report.performance, sorted(all_perf), settings)
    if overall:
        report.overall_percent = c.r2(c.weighted_mean(overall) or 0.0)
        report.gpa = c.r2(c.weighted_mean(gpa) or 0.0)
    semesters = sorted({e.semester for e in enr})
    hq = sa.select(
        Highlight.semester, Highlight.title, Highlight.description, Highlight.kind
    ).where(Highlight.student_ref == sref, Highlight.deleted_at.is_(None), *mine(Highlight))
    if scope.semester or dated:
        hq = hq.where(Highlight.semester.in_(semesters or [scope.semester]))
    for h in conn.execute(hq.order_by(Highlight.semester, Highlight.title)):
        report.highlights.add(
            semester=h.semester, title=h.title, description=h.description or "", kind=h.kind or ""
        )
    if days:
        report.first_day, report.last_day = str(min(days)), str(max(days))
    if not (grades or att or perf or report.highlights):
        report.empty = True
        what = ANY_DAY[language] if scope.label == "all" else scope.label
        report.note = EMPTY_NOTE[language].format(what=what)
    return report


def _attendance(
    out: pb.AttendanceSummary, counts: dict[str, int], settings: ReportSettings
) -> None:
    for status in sorted(counts):
        out.counts.add(status=status, count=counts[status])
    out.total = sum(counts.values())
    out.rate = c.r2(c.attendance_rate(counts, settings.attended_statuses))


def _performance(
    out: pb.PerformanceSummary, points: list[tuple[dt.date, float]], settings: ReportSettings
) -> None:
    label, slope = c.trend(points, settings)
    out.trend = label
    if not points:
        return
    out.count = len(points)
    out.average = c.r2(sum(s for _, s in points) / len(points))
    out.trend_per_week = c.r2(slope)
    weeks: dict[dt.date, list[float]] = defaultdict(list)
    for d, s in points:
        weeks[c.monday(d)].append(s)
    for w in sorted(weeks):
        vals = weeks[w]
        out.weekly.add(week=str(w), average=c.r2(sum(vals) / len(vals)), count=len(vals))


def class_averages(
    conn: Connection, course_ids: list[int], scope: Scope, settings: ReportSettings
) -> dict[int, tuple[float | None, int]]:
    """Per course: (average weighted percent of its graded students, or None when fewer
    than `class_size` are graded; how many are graded)."""
    if not course_ids:
        return {}
    # One correlated lookup per enrolment on grades' (enrollment_ref, ...) index: a join
    # with GROUP BY makes PostgreSQL scan all grades (60 ms at 300k grades, 10 ms this way).
    marks = [
        Grade.enrollment_ref == Enrollment.id,
        Grade.deleted_at.is_(None),
        Grade.max_score > 0,
        Grade.weight > 0,
        *_in_range(Grade.graded_on, scope),
        *mine(Grade),
    ]

    num = Grade.score / Grade.max_score * Grade.weight
    # The enrolment's student is live: an anti-join on the deleted students alone
    # (ix_students_deleted, a partial index of a few rows), where a join with the live
    # students read and hashed every student of the school on every miss (409 of the
    # 5.7k buffers and a third of the query's time at the bench scale). The student an
    # enrolment names is of the enrolment's school: references resolve by natural key
    # within one school (ferry.merge), and the enrolment itself is scoped below.
    deleted_student = sa.exists().where(
        Student.id == Enrollment.student_ref, Student.deleted_at.is_not(None)
    )
    live = [
        Enrollment.course_ref.in_(course_ids),
        Enrollment.deleted_at.is_(None),
        ~deleted_student,
        counts_enrolment(),
        *mine(Enrollment),
    ]
    out: dict[int, tuple[float | None, int]] = {}
    if conn.dialect.name == "postgresql":
        # Both sums from one index lookup per enrolment (LATERAL): two correlated
        # subqueries read each enrolment's grades twice (10k buffers for a report of five
        # courses of 250 at the bench scale, 5.6k this way). Averaged per course by the
        # database: one row per course comes back, not one per classmate.
        sums = (
            sa.select(sa.func.sum(num).label("num"), sa.func.sum(Grade.weight).label("den"))
            .where(*marks)
            .correlate(Enrollment)
            .lateral("sums")
        )
        rows = conn.execute(
            sa.select(
                Enrollment.course_ref,
                sa.func.sum(sums.c.num / sums.c.den * 100),
                sa.func.count(),
            )
            .select_from(Enrollment)
            .join(sums, sa.true())
            .where(*live, sums.c.den > 0)
            .group_by(Enrollment.course_ref)
        ).all()
        per = {int(cid): (float(total), int(n)) for cid, total, n in rows}
    else:  # SQLite has no LATERAL

        def per_enrolment(value: Any) -> Any:
            return (
                sa.select(sa.func.sum(value)).where(*marks).correlate(Enrollment).scalar_subquery()
            )

        query = sa.select(
            Enrollment.course_ref, per_enrolment(num), per_enrolment(Grade.weight)
        ).select_from(Enrollment)
        per = {}
        for cid, n, d in conn.execute(query.where(*live)).all():
            if d:
                total, count = per.get(cid, (0.0, 0))
                per[cid] = (total + float(n) / float(d) * 100, count + 1)
    for cid in course_ids:
        total, count = per.get(cid, (0.0, 0))
        out[cid] = (total / count if count >= settings.class_size else None, count)
    return out


def search_students(conn: Connection, query: str, limit: int = 20) -> list[pb.StudentMatch]:
    """Students whose id starts with `query` or whose first or last name (or both, as
    "first last") contains it, case-insensitively; soft-deleted ones never."""
    q = query.strip()
    if not q:
        raise InvalidArgument("query is required", field="query")
    if len(q) > 100:
        raise InvalidArgument("query is longer than 100 characters", field="query")
    if not 0 <= limit <= 50:
        raise InvalidArgument("limit must be 1..50 (0: 20)", field="limit")
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = "%" + escaped.lower() + "%"
    name = Student.first_name + " " + Student.last_name
    full = sa.func.lower(name)
    rows = conn.execute(
        sa.select(Student.student_id, Student.first_name, Student.last_name, Student.year_level)
        .where(
            Student.deleted_at.is_(None),
            *mine(Student),
            sa.or_(
                sa.func.lower(Student.student_id).like(like[1:], escape="\\"),
                full.like(like, escape="\\"),
                # SQLite's lower() knows ASCII only: Greek matches as typed.
                name.like("%" + escaped + "%", escape="\\"),
            ),
        )
        .order_by(Student.student_id)
        .limit(limit or 20)
    ).all()
    return [
        pb.StudentMatch(
            student_id=r.student_id,
            first_name=r.first_name,
            last_name=r.last_name,
            year_level=r.year_level or 0,
        )
        for r in rows
    ]
