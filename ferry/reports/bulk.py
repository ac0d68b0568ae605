"""Bulk student reports: up to `bulk_max_students` (50) students in one file.

A student that fails (not found, no data in the range) is listed with its reason and
never stops the others. Outputs: a JSON summary, one combined CSV with a Failures
section, a ZIP of PDFs (with failures.csv), or one merged PDF (pypdf) with a bookmark per
student and a last page listing the students left out.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field

import sqlalchemy as sa
from pypdf import PdfReader, PdfWriter

from ferry.db.models import Course, Enrollment, Student
from ferry.errors import FerryError, InvalidArgument, NotFound
from ferry.reports import render
from ferry.reports.engine import File, ReportEngine, check_format
from ferry.reports.scope import mine
from ferry.reports.semester import check_language
from ferry.reports.student import Scope, parse_scope
from ferry.v1 import reports_pb2 as pb

OUTPUTS = ("zip", "pdf", "csv", "json")
# The earliest time a zip entry can carry, for an archive of no data at all.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass
class BulkResult:
    requested: list[str]
    reports: list[pb.StudentReport] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def students_of(reports: ReportEngine, req: pb.BulkStudentReportsRequest) -> tuple[list[str], str]:
    """The requested student ids, in order, without repeats, and the course's semester
    (empty for listed students); INVALID_ARGUMENT over the cap (a malformed id is not
    refused here: `collect` lists it as failed)."""
    cap = reports.settings.bulk_max_students
    if req.student_ids and req.course_code:
        raise InvalidArgument("give student_ids or course_code, not both", field="student_ids")
    if req.course_code:
        with reports.db.connect() as conn:
            found = conn.execute(
                sa.select(Course.id, Course.semester).where(
                    Course.course_code == req.course_code,
                    Course.deleted_at.is_(None),
                    *mine(Course),
                )
            ).first()
            if found is None:
                raise NotFound(f"course {req.course_code!r} does not exist", field="course_code")
            ids = list(
                conn.execute(
                    sa.select(Student.student_id)
                    .join(Enrollment, Enrollment.student_ref == Student.id)
                    .where(
                        Enrollment.course_ref == found.id,
                        Enrollment.deleted_at.is_(None),
                        Student.deleted_at.is_(None),
                        *mine(Enrollment, Student),
                    )
                    .order_by(Student.student_id)
                    .limit(cap + 1)
                ).scalars()
            )
        if len(ids) > cap:
            raise InvalidArgument(
                f"course {req.course_code} has more than {cap} students; bulk reports take "
                f"at most {cap}",
                field="course_code",
            )
        return ids, str(found.semester)
    if not req.student_ids:
        raise InvalidArgument("give student_ids or a course_code", field="student_ids")
    # Each id is checked when its report is made: a bad one (too long, a NUL byte) is
    # listed as failed and never fails the others (the validate filter leaves these ids
    # to this code).
    seen: dict[str, None] = {}
    for i, sid in enumerate(req.student_ids):
        if not sid.strip():
            raise InvalidArgument(f"student_ids[{i}] is required", field=f"student_ids[{i}]")
        seen[sid.strip()] = None
    if len(seen) > cap:
        raise InvalidArgument(
            f"{len(seen)} students asked for; bulk reports take at most {cap}",
            field="student_ids",
        )
    return list(seen), ""


def collect(
    reports: ReportEngine, ids: list[str], scope: Scope, role: int, language: str = ""
) -> BulkResult:
    out = BulkResult(ids)
    for sid in ids:
        try:
            report, _ = reports.student(sid, scope, role, language)
        except NotFound:
            out.failures.append((sid, "not found"))
            continue
        except FerryError as e:
            out.failures.append((sid, e.message))
            continue
        if report.empty:
            out.failures.append((sid, f"no data: {report.note}"))
            continue
        out.reports.append(report)
    return out


def bulk(reports: ReportEngine, req: pb.BulkStudentReportsRequest, role: int = 0) -> File:
    output = check_format(req.output, "output", OUTPUTS)
    scope = parse_scope(req.semester, req.date_from, req.date_to)
    lang = check_language(req.language)
    ids, course_semester = students_of(reports, req)
    if course_semester and not (scope.semester or scope.date_from or scope.date_to):
        scope = Scope(semester=course_semester)  # a class's reports: its semester
    res = collect(reports, ids, scope, role, req.language)
    who = req.course_code or f"{len(ids)}_students"
    base = f"student_reports_{render.safe(who)}_{render.safe(scope.label)}_{lang}"
    if output == "json":
        doc = {
            "requested": len(ids),
            "succeeded": len(res.reports),
            "failed": [{"student_id": s, "reason": r} for s, r in res.failures],
            "reports": [render.to_dict(r) for r in res.reports],
        }
        return File(f"{base}.json", render.CONTENT_TYPES["json"], render.json_bytes(doc))
    scale = reports.settings
    from ferry.reports.student import scale_pb

    if output == "csv":
        data = render.students_csv(res.reports, res.failures, scale_pb(scale))
        return File(f"{base}.csv", render.CONTENT_TYPES["csv"], data)
    # Rendered from the reports already in hand (they came through the cache).
    pdfs = [(r, render.student(r, "pdf")) for r in res.reports]
    if output == "zip":
        return File(f"{base}.zip", render.CONTENT_TYPES["zip"], _zip(pdfs, res.failures))
    return File(f"{base}.pdf", render.CONTENT_TYPES["pdf"], _merged(pdfs, res.failures))


def _failures_csv(failures: list[tuple[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["student_id", "reason"])
    w.writerows(failures)
    return buf.getvalue().encode()


def _zip(pdfs: list[tuple[pb.StudentReport, bytes]], failures: list[tuple[str, str]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for r, data in pdfs:
            info = zipfile.ZipInfo(render.student_filename(r, "pdf"), _entry_time(r.last_day))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
        if failures:
            latest = max((r.last_day for r, _ in pdfs if r.last_day), default="")
            info = zipfile.ZipInfo("failures.csv", _entry_time(latest))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, _failures_csv(failures))
    return buf.getvalue()


def _entry_time(day: str) -> tuple[int, int, int, int, int, int]:
    """A zip entry's date: the last day with data in its report (YYYY-MM-DD), so a person
    unpacking the archive sees a real date while the same data still gives the same bytes
    (never the clock's time); the zip format's earliest date for a report of no days."""
    if not day:
        return _ZIP_EPOCH
    y, m, d = (int(x) for x in day.split("-"))
    return (y, m, d, 0, 0, 0) if y >= 1980 else _ZIP_EPOCH


def _merged(pdfs: list[tuple[pb.StudentReport, bytes]], failures: list[tuple[str, str]]) -> bytes:
    from ferry.reports.render_pdf import failures_pdf

    writer = PdfWriter()
    for r, data in pdfs:
        start = len(writer.pages)
        writer.append(PdfReader(io.BytesIO(data)), import_outline=False)
        writer.add_outline_item(
            title=f"{r.student_id} {r.first_name} {r.last_name}", page_number=start
        )
    if failures or not pdfs:
        start = len(writer.pages)
        writer.append(PdfReader(io.BytesIO(failures_pdf(failures))), import_outline=False)
        writer.add_outline_item(title=f"Not included ({len(failures)})", page_number=start)
    writer.add_metadata({"/Title": "Student reports", "/Producer": "Ferry reports"})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()
