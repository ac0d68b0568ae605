"""Reports as files: json and csv here, pdf in render_pdf.py. Every renderer is a pure
function of the report message, so the same data gives the same bytes."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format, message

from ferry.tabular.safety import neutralise
from ferry.v1 import reports_pb2 as pb

CONTENT_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "zip": "application/zip",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe(name: str) -> str:
    """A file-name part: letters, digits, dot, dash, underscore."""
    return _UNSAFE.sub("_", name).strip("._") or "report"


def student_filename(report: pb.StudentReport, ext: str) -> str:
    """`<student>_performance_<from>_<to>_<language>.<ext>`: the asked range, else the
    data's days, else the semester (or "all"), and the language its words are in."""
    lo = report.date_from or report.first_day or report.semester or "all"
    hi = report.date_to or report.last_day or report.semester or "all"
    lang = safe(report.language or "en")
    return f"{safe(report.student_id)}_performance_{safe(lo)}_{safe(hi)}_{lang}.{ext}"


def semester_filename(semester: str, language: str, ext: str) -> str:
    """`semester_<semester>_<language>.<ext>` (semester_2026-fall_el.pdf)."""
    return f"semester_{safe(semester)}_{safe(language or 'en')}.{ext}"


def to_dict(msg: message.Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode()


def student(report: pb.StudentReport, fmt: str) -> bytes:
    if fmt == "json":
        return json_bytes(to_dict(report))
    if fmt == "csv":
        return student_csv(report)
    from ferry.reports.render_pdf import student_pdf

    return student_pdf(report)


def semester(report: pb.SemesterReport, fmt: str) -> bytes:
    if fmt == "json":
        return json_bytes(to_dict(report))
    if fmt == "csv":
        return semester_csv(report)
    from ferry.reports.render_pdf import semester_pdf

    return semester_pdf(report)


class Sections:
    """A csv of titled sections: `# Title`, a header row, rows, a blank line between."""

    def __init__(self) -> None:
        self.buf = io.StringIO()
        self.w = csv.writer(self.buf, lineterminator="\r\n")
        self.first = True

    def section(self, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        if not self.first:
            self.w.writerow([])
        self.first = False
        self.w.writerow([f"# {title}"])
        self.w.writerow(header)
        for row in rows:
            self.w.writerow([_cell(v) for v in row])

    def bytes(self) -> bytes:
        return self.buf.getvalue().encode("utf-8")


def _cell(v: Any) -> Any:
    if isinstance(v, str):
        return neutralise(v)
    if isinstance(v, float):
        return f"{v:.2f}"
    return v


def student_sections(out: Sections, reports: Sequence[pb.StudentReport]) -> None:
    """The sections of one or more students' reports (one row per student per line)."""
    out.section(
        "Student",
        [
            "student_id",
            "first_name",
            "last_name",
            "year_level",
            "range",
            "first_day",
            "last_day",
            "overall_percent",
            "gpa",
            "credits_attempted",
            "credits_earned",
            "attendance_rate",
            "performance_average",
            "performance_trend",
            "note",
        ],
        [
            [
                r.student_id,
                r.first_name,
                r.last_name,
                r.year_level,
                _range(r),
                r.first_day,
                r.last_day,
                r.overall_percent,
                r.gpa,
                r.credits_attempted,
                r.credits_earned,
                r.attendance.rate,
                r.performance.average,
                r.performance.trend,
                r.note,
            ]
            for r in reports
        ],
    )
    out.section(
        "Courses",
        [
            "student_id",
            "course_code",
            "title",
            "semester",
            "teacher",
            "credits",
            "status",
            "weighted_percent",
            "letter",
            "class_average",
            "class_size",
            "attendance_rate",
            "performance_average",
            "performance_trend",
        ],
        [
            [
                r.student_id,
                c.course_code,
                c.title,
                c.semester,
                c.teacher,
                c.credits,
                c.status,
                c.weighted_percent if c.graded else "",
                c.letter,
                c.class_average if c.has_class_average else "",
                c.class_size,
                c.attendance.rate,
                c.performance.average if c.performance.count else "",
                c.performance.trend,
            ]
            for r in reports
            for c in r.courses
        ],
    )
    out.section(
        "Assessments",
        [
            "student_id",
            "course_code",
            "assessment",
            "score",
            "max_score",
            "weight",
            "percent",
            "graded_on",
            "comment",
        ],
        [
            [
                r.student_id,
                c.course_code,
                a.assessment,
                a.score,
                a.max_score,
                a.weight,
                a.percent,
                a.graded_on,
                a.comment,
            ]
            for r in reports
            for c in r.courses
            for a in c.assessments
        ],
    )
    out.section(
        "Attendance",
        ["student_id", "course_code", "status", "days"],
        [
            [r.student_id, c.course_code, s.status, s.count]
            for r in reports
            for c in r.courses
            for s in c.attendance.counts
        ],
    )
    out.section(
        "Highlights",
        ["student_id", "semester", "title", "kind", "description"],
        [
            [r.student_id, h.semester, h.title, h.kind, h.description]
            for r in reports
            for h in r.highlights
        ],
    )


def _range(r: pb.StudentReport) -> str:
    if r.semester:
        return r.semester
    if r.date_from or r.date_to:
        return f"{r.date_from or '…'}..{r.date_to or '…'}"
    return "all"


def scale_section(out: Sections, scale: Iterable[pb.GradeBand]) -> None:
    out.section(
        "Grading scale",
        ["letter", "min_percent", "points"],
        [[b.letter, b.min_percent, b.points] for b in scale],
    )


def student_csv(r: pb.StudentReport) -> bytes:
    out = Sections()
    student_sections(out, [r])
    scale_section(out, r.grading_scale)
    return out.bytes()


def students_csv(
    reports: Sequence[pb.StudentReport],
    failures: Sequence[tuple[str, str]],
    scale: Iterable[pb.GradeBand],
) -> bytes:
    """One csv for many students, with a section listing those that failed and why."""
    out = Sections()
    student_sections(out, reports)
    out.section("Failures", ["student_id", "reason"], failures)
    scale_section(out, scale)
    return out.bytes()


def semester_csv(r: pb.SemesterReport) -> bytes:
    out = Sections()
    letters = [b.letter for b in r.grading_scale]
    out.section(
        "Semester",
        ["semester", "students", "average", "attendance_rate", *[f"grade_{x}" for x in letters]],
        [
            [
                r.semester,
                r.student_count,
                r.average,
                r.attendance_rate,
                *[d.count for d in r.distribution],
            ]
        ],
    )
    out.section(
        "Courses",
        [
            "course_code",
            "title",
            "teacher",
            "credits",
            "enrolled",
            "withdrawn",
            "graded",
            "average",
            "attendance_rate",
            *[f"grade_{x}" for x in letters],
        ],
        [
            [
                c.course_code,
                c.title,
                c.teacher,
                c.credits,
                c.enrolled,
                c.withdrawn,
                c.graded,
                c.average,
                c.attendance_rate,
                *[d.count for d in c.distribution],
            ]
            for c in r.courses
        ],
    )
    out.section(
        "At risk",
        [
            "student_id",
            "name",
            "overall_percent",
            "attendance_rate",
            "trend_per_week",
            "reasons",
            "reasons_in_words",
        ],
        [
            [
                a.student_id,
                a.name,
                a.overall_percent if a.graded else "",
                a.attendance_rate,
                a.trend_per_week,
                " ".join(a.reasons),
                "; ".join(a.reason_texts),
            ]
            for a in r.at_risk
        ],
    )
    out.section(
        "Highlights",
        ["student_id", "student_name", "title", "kind", "description"],
        [[h.student_id, h.student_name, h.title, h.kind, h.description] for h in r.highlights],
    )
    t = r.thresholds
    out.section(
        "Thresholds",
        ["min_percent", "min_attendance_rate", "falling_trend_per_week", "min_trend_weeks"],
        [[t.min_percent, t.min_attendance_rate, t.falling_trend_per_week, t.min_trend_weeks]],
    )
    scale_section(out, r.grading_scale)
    return out.bytes()
