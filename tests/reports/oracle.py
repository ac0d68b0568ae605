"""A second implementation of every report number: what counts is chosen in plain SQL
written apart from ferry.reports, the arithmetic is redone here with other formulas.

Nothing here imports ferry.reports; the rules come from the docs: a row counts only when it
and every parent it hangs from (enrolment, course, student) are live; withdrawn or dropped
enrolments are W and left out of the GPA, credits attempted and every average; a mark
counts only with a positive max_score and weight; a class average needs 5 live graded
students; a trend needs marks in 3 distinct weeks, and falls at -0.25 points a week.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCALE = [("A", 90.0, 4.0), ("B", 80.0, 3.0), ("C", 70.0, 2.0), ("D", 60.0, 1.0), ("F", 0.0, 0.0)]
ATTENDED = ("present", "late")
OUT = ("dropped", "withdrawn")
CLASS_SIZE = 5
MIN_WEEKS = 3
FALLING = 0.25
MIN_PERCENT = 60.0
MIN_ATTENDANCE = 80.0

# The live enrolments: the enrolment, its student and its course all not soft-deleted.
LIVE = """
  FROM enrollments e
  JOIN students s ON s.id = e.student_ref AND s.deleted_at IS NULL
  JOIN courses c ON c.id = e.course_ref AND c.deleted_at IS NULL
  WHERE e.deleted_at IS NULL
"""


def band(pct: float) -> tuple[str, float]:
    p = round(pct, 2)
    for letter, lo, points in SCALE:
        if p >= lo:
            return letter, points
    raise AssertionError(pct)


def week(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.isoweekday() - 1)


def _day(v: Any) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10])


def slope(points: list[tuple[dt.date, float]]) -> float:
    """Least squares by the normal equations (ferry.reports centres its x instead)."""
    n = len(points)
    xs = [d.toordinal() / 7.0 for d, _ in points]
    ys = [s for _, s in points]
    sx, sy = sum(xs), sum(ys)
    sxx = sum(x * x for x in xs)
    sxy = sum(x * y for x, y in zip(xs, ys, strict=True))
    return (n * sxy - sx * sy) / (n * sxx - sx * sx)


def trend(points: list[tuple[dt.date, float]]) -> tuple[str, float]:
    if len({week(d) for d, _ in points}) < MIN_WEEKS:
        return "not_enough_data", 0.0
    k = slope(points)
    return ("falling" if k <= -FALLING else "rising" if k >= FALLING else "steady"), k


def mean_by(pairs: list[tuple[float, float]]) -> float | None:
    """Weighted by the second of each pair; all weights zero: the plain mean."""
    if not pairs:
        return None
    w = sum(b for _, b in pairs)
    if w > 0:
        return sum(a * b for a, b in pairs) / w
    return sum(a for a, _ in pairs) / len(pairs)


@dataclass
class Enrolment:
    id: int
    student_id: str
    course_id: int
    course_code: str
    semester: str
    credits: int
    status: str
    percent: float | None = None  # of its countable marks, None when none count
    attendance: dict[str, int] = field(default_factory=dict)
    marks: list[tuple[dt.date, float]] = field(default_factory=list)
    days: list[dt.date] = field(default_factory=list)
    grades: int = 0

    @property
    def out(self) -> bool:
        return self.status in OUT


class Oracle:
    """Everything read once, in a handful of plain SQL statements."""

    def __init__(
        self, conn: Connection, lo: dt.date | None = None, hi: dt.date | None = None
    ) -> None:
        """Everything (lo, hi both None) or only grades, days and marks dated lo..hi."""
        self.dated = lo is not None or hi is not None
        dates = {"lo": lo or dt.date(1, 1, 1), "hi": hi or dt.date(9999, 12, 31)}
        q = lambda sql: conn.execute(sa.text(sql), dates).all()  # noqa: E731
        g_in = " AND g.graded_on BETWEEN :lo AND :hi " if self.dated else " "
        self.enrolments: dict[int, Enrolment] = {}
        for eid, sid, cid, code, sem, credits, status in q(
            "SELECT e.id, s.student_id, c.id, c.course_code, c.semester, c.credits, "
            "COALESCE(e.status, '')" + LIVE
        ):
            self.enrolments[eid] = Enrolment(eid, sid, cid, code, sem, int(credits or 0), status)
        for eid, num, den in q(
            "SELECT g.enrollment_ref, SUM(g.score * g.weight / g.max_score), SUM(g.weight) "
            "FROM grades g WHERE g.deleted_at IS NULL AND g.max_score > 0 AND g.weight > 0 "
            + g_in
            + "AND g.enrollment_ref IN (SELECT e.id"
            + LIVE
            + ") GROUP BY g.enrollment_ref"
        ):
            self.enrolments[eid].percent = float(num) * 100.0 / float(den)
        for eid, n, first, last in q(
            "SELECT g.enrollment_ref, COUNT(*), MIN(g.graded_on), MAX(g.graded_on) FROM grades g "
            "WHERE g.deleted_at IS NULL"
            + g_in
            + "AND g.enrollment_ref IN (SELECT e.id"
            + LIVE
            + ") "
            "GROUP BY g.enrollment_ref"
        ):
            e = self.enrolments[eid]
            e.grades = int(n)
            e.days += [_day(d) for d in (first, last) if d is not None]
        for eid, status, n, first, last in q(
            "SELECT a.enrollment_ref, a.status, COUNT(*), MIN(a.date), MAX(a.date) "
            "FROM attendance a WHERE a.deleted_at IS NULL AND a.date BETWEEN :lo AND :hi "
            "AND a.enrollment_ref IN (SELECT e.id" + LIVE + ") "
            "GROUP BY a.enrollment_ref, a.status"
        ):
            e = self.enrolments[eid]
            e.attendance[status] = int(n)
            e.days += [_day(first), _day(last)]
        for eid, day, score in q(
            "SELECT p.enrollment_ref, p.date, p.score FROM daily_performance p "
            "WHERE p.deleted_at IS NULL AND p.date BETWEEN :lo AND :hi "
            "AND p.enrollment_ref IN (SELECT e.id" + LIVE + ")"
        ):
            e = self.enrolments[eid]
            e.marks.append((_day(day), float(score)))
            e.days.append(_day(day))
        self.highlights: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for sid, sem, title in q(
            "SELECT s.student_id, h.semester, h.title FROM highlights h "
            "JOIN students s ON s.id = h.student_ref AND s.deleted_at IS NULL "
            "WHERE h.deleted_at IS NULL"
        ):
            self.highlights[sid].append((sem, title))
        self.live_students = {
            r[0] for r in q("SELECT student_id FROM students WHERE deleted_at IS NULL")
        }
        self.semesters = {
            r[0]: int(r[1])
            for r in q(
                "SELECT semester, COUNT(*) FROM courses WHERE deleted_at IS NULL GROUP BY semester"
            )
        }
        # Per course: the percentages of its live graded students that count.
        self.class_pcts: dict[int, list[float]] = defaultdict(list)
        for e in self.enrolments.values():
            if not e.out and e.percent is not None:
                self.class_pcts[e.course_id].append(e.percent)

    # --- the student report -------------------------------------------------------------

    def student(self, sid: str, semester: str = "") -> dict[str, Any]:
        mine = sorted(
            (
                e
                for e in self.enrolments.values()
                if e.student_id == sid
                and (not semester or e.semester == semester)
                # A date range shows only the courses with something in it.
                and (not self.dated or e.grades or e.attendance or e.marks)
            ),
            key=lambda e: (e.semester, e.course_code),
        )
        courses = []
        overall: list[tuple[float, float]] = []
        gpa: list[tuple[float, float]] = []
        attempted = earned = 0
        totals: dict[str, int] = defaultdict(int)
        marks: list[tuple[dt.date, float]] = []
        days: list[dt.date] = []
        for e in mine:
            row: dict[str, Any] = {"code": e.course_code, "semester": e.semester}
            if e.out:
                row.update(letter="W", graded=False)
            elif e.percent is not None:
                letter, points = band(e.percent)
                row.update(letter=letter, graded=True, percent=e.percent, points=points)
                overall.append((e.percent, float(e.credits)))
                gpa.append((points, float(e.credits)))
                attempted += e.credits
                earned += e.credits if points > 0 else 0
            else:
                row.update(letter="", graded=False)
            pcts = self.class_pcts.get(e.course_id, [])
            row["class_size"] = len(pcts)
            row["class_average"] = sum(pcts) / len(pcts) if len(pcts) >= CLASS_SIZE else None
            row["attendance"] = dict(e.attendance)
            row["attendance_rate"] = _rate(e.attendance)
            row["performance"] = _perf(e.marks)
            courses.append(row)
            for k, n in e.attendance.items():
                totals[k] += n
            marks += e.marks
            days += e.days
        # A range's highlights are those of the semesters of the courses it shows.
        shown = {e.semester for e in mine}
        highlights = sorted(
            t
            for sem, t in self.highlights.get(sid, [])
            if (not semester or sem == semester) and (not self.dated or sem in shown)
        )
        has_data = any(e.grades or e.attendance or e.marks for e in mine)
        return {
            "courses": courses,
            "overall": mean_by(overall),
            "gpa": mean_by(gpa),
            "attempted": attempted,
            "earned": earned,
            "attendance": dict(totals),
            "attendance_rate": _rate(totals),
            "performance": _perf(marks),
            "highlights": highlights,
            "first_day": str(min(days)) if days else "",
            "last_day": str(max(days)) if days else "",
            "empty": not (has_data or highlights),
        }

    # --- the semester report ------------------------------------------------------------

    def semester(self, semester: str) -> dict[str, Any]:
        mine = [e for e in self.enrolments.values() if e.semester == semester]
        by_course: dict[str, list[Enrolment]] = defaultdict(list)
        for e in mine:
            by_course[e.course_code].append(e)
        courses = {}
        all_pcts: list[float] = []
        att: dict[str, int] = defaultdict(int)
        for code, es in by_course.items():
            pcts = [e.percent for e in es if not e.out and e.percent is not None]
            counts: dict[str, int] = defaultdict(int)
            for e in es:
                for k, n in e.attendance.items():
                    counts[k] += n
                    att[k] += n
            dist: dict[str, int] = defaultdict(int)
            for p in pcts:
                dist[band(p)[0]] += 1
            all_pcts += pcts
            courses[code] = {
                "enrolled": sum(1 for e in es if not e.out),
                "withdrawn": sum(1 for e in es if e.out),
                "graded": len(pcts),
                "average": sum(pcts) / len(pcts) if pcts else 0.0,
                "distribution": dict(dist),
                "attendance_rate": _rate(counts),
                "attendance_days": sum(counts.values()),
            }
        students: dict[str, list[Enrolment]] = defaultdict(list)
        for e in mine:
            students[e.student_id].append(e)
        at_risk = {}
        for sid, es in students.items():
            overall = mean_by(
                [(e.percent, float(e.credits)) for e in es if not e.out and e.percent is not None]
            )
            counts = defaultdict(int)
            for e in es:
                for k, n in e.attendance.items():
                    counts[k] += n
            rate = _rate(counts)
            label, k = trend(sorted(m for e in es for m in e.marks))
            reasons = []
            if overall is not None and round(overall, 2) < MIN_PERCENT:
                reasons.append("low_grade")
            if counts and round(rate, 2) < MIN_ATTENDANCE:
                reasons.append("low_attendance")
            if label == "falling":
                reasons.append("falling_trend")
            if reasons:
                at_risk[sid] = {"reasons": reasons, "overall": overall, "rate": rate, "slope": k}
        dist_total: dict[str, int] = defaultdict(int)
        for c in courses.values():
            for letter, n in c["distribution"].items():
                dist_total[letter] += n
        live_highlights = {
            (sid, title)
            for sid, rows in self.highlights.items()
            for sem, title in rows
            if sem == semester
        }
        return {
            "highlights": live_highlights,
            "courses": courses,
            "student_count": len(students),
            "average": sum(all_pcts) / len(all_pcts) if all_pcts else 0.0,
            "attendance_rate": _rate(att),
            "distribution": dict(dist_total),
            "at_risk": at_risk,
        }


def _rate(counts: dict[str, int]) -> float:
    total = sum(counts.values())
    return 100.0 * sum(counts.get(s, 0) for s in ATTENDED) / total if total else 0.0


def _perf(marks: list[tuple[dt.date, float]]) -> dict[str, Any]:
    weeks: dict[dt.date, list[float]] = defaultdict(list)
    for d, s in marks:
        weeks[week(d)].append(s)
    label, k = trend(sorted(marks))
    return {
        "count": len(marks),
        "average": sum(s for _, s in marks) / len(marks) if marks else 0.0,
        "trend": label,
        "slope": k,
        "weekly": [(str(w), sum(v) / len(v), len(v)) for w, v in sorted(weeks.items())],
    }
