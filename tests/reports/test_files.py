"""Report files read back: PDFs through a real text extractor (pypdf), their pages
rendered to PNG in test-artifacts/ (pypdfium2); bulk outputs with missing students."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pypdfium2
import pytest
from pypdf import PdfReader

from ferry.errors import InvalidArgument, NotFound
from ferry.reports.bulk import bulk
from ferry.reports.engine import ReportEngine
from ferry.v1 import reports_pb2 as pb

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reports"


def save_pages(data: bytes, name: str) -> int:
    """Every page of the PDF as a PNG in test-artifacts/reports/; returns the page count."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    doc = pypdfium2.PdfDocument(data)
    for i in range(len(doc)):
        doc[i].render(scale=1.5).to_pil().save(ARTIFACTS / f"{name}-p{i + 1}.png")
    n = len(doc)
    doc.close()
    return n


def text(data: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def test_student_pdf_reads_back(engine: ReportEngine, backend: str) -> None:
    req = pb.GetStudentReportRequest(student_id="S1", semester="2026-fall")
    f, _ = engine.render_student(req, "pdf")
    assert f.filename == "S1_performance_2026-09-07_2026-09-22_en.pdf"
    t = text(f.data)
    for expected in [
        "Student report: Ελένη Νικολάου",  # Greek in DejaVu Sans
        "Μαρία Παπαδοπούλου",
        "87.50",  # MATH result
        "77.50",  # its class average
        "95.00",  # ART
        "90.00%",  # overall
        "3.33",  # GPA
        "Course results",  # the bar chart's title
        "Attendance (days)",
        "Performance by week (falling)",
        "2026-09-22",  # a graded-on date, whole
        "Καλή δουλειά",
        "Science fair winner",
        "Page 1",
    ]:
        assert expected in t, expected
    assert save_pages(f.data, f"student-S1-{backend}") >= 1
    again, _ = engine.render_student(req, "pdf")
    assert again.data == f.data


def test_empty_student_pdf(engine: ReportEngine) -> None:
    f, _ = engine.render_student(pb.GetStudentReportRequest(student_id="S6"), "pdf")
    assert "No grades, attendance or performance recorded" in text(f.data)


def test_semester_pdf_reads_back(engine: ReportEngine, backend: str) -> None:
    f, _ = engine.render_semester("2026-fall", "pdf")
    t = text(f.data)
    for expected in [
        "Semester report: 2026-fall",
        "Grade distribution",
        "MATH Mathematics",
        "77.50",
        "Students at risk (1)",
        "falling_trend",
        "Ελένη Νικολάου",
    ]:
        assert expected in t, expected
    save_pages(f.data, f"semester-{backend}")


def test_csv_sections(engine: ReportEngine) -> None:
    f, _ = engine.render_student(pb.GetStudentReportRequest(student_id="S1"), "csv")
    sections = f.data.decode().split("\r\n\r\n")
    titles = [s.split("\r\n", 1)[0] for s in sections]
    assert titles == [
        "# Student",
        "# Courses",
        "# Assessments",
        "# Attendance",
        "# Highlights",
        "# Grading scale",
    ]
    courses = list(csv.DictReader(io.StringIO(sections[1].split("\r\n", 1)[1])))
    assert [
        (c["course_code"], c["weighted_percent"], c["letter"], c["class_average"]) for c in courses
    ] == [("ART", "95.00", "A", ""), ("MATH", "87.50", "B", "77.50")]


def test_bulk_with_missing_students(engine: ReportEngine, backend: str) -> None:
    req = pb.BulkStudentReportsRequest(student_ids=["S1", "S404", "S6", "S1", "S2"], output="json")
    doc = json.loads(bulk(engine, req).data)
    assert doc["requested"] == 4 and doc["succeeded"] == 2
    assert [f["student_id"] for f in doc["failed"]] == ["S404", "S6"]
    assert doc["failed"][0]["reason"] == "not found"
    assert doc["failed"][1]["reason"].startswith("no data")

    req.output = "csv"
    data = bulk(engine, req).data.decode()
    assert '# Failures\r\nstudent_id,reason\r\nS404,not found\r\nS6,"no data' in data
    assert "S2,MATH,Mathematics" in data and "S1,ART,Art" in data

    req.output = "pdf"
    f = bulk(engine, req)
    assert f.filename == "student_reports_4_students_all_en.pdf"
    reader = PdfReader(io.BytesIO(f.data))
    marks = [(o.title, reader.get_destination_page_number(o)) for o in reader.outline]
    assert [m[0] for m in marks] == ["S1 Ελένη Νικολάου", "S2 Ann Bee", "Not included (2)"]
    assert marks[0][1] == 0 and marks[1][1] > 0 and marks[2][1] == len(reader.pages) - 1
    assert "S404" in reader.pages[-1].extract_text()
    save_pages(f.data, f"bulk-merged-{backend}")

    req.output = "zip"
    z = zipfile.ZipFile(io.BytesIO(bulk(engine, req).data))
    assert z.namelist() == [
        "S1_performance_2026-09-07_2026-09-22_en.pdf",
        "S2_performance_2026-09-15_2026-09-22_en.pdf",
        "failures.csv",
    ]
    assert "Ann Bee" in text(z.read(z.namelist()[1]))


def test_bulk_by_course_and_limits(engine: ReportEngine) -> None:
    doc = json.loads(
        bulk(engine, pb.BulkStudentReportsRequest(course_code="MATH", output="json")).data
    )
    assert [r["student_id"] for r in doc["reports"]] == ["S1", "S2", "S3", "S4", "S5"]
    too_many = pb.BulkStudentReportsRequest(student_ids=[f"X{i}" for i in range(51)])
    with pytest.raises(InvalidArgument, match="at most 50") as e:
        bulk(engine, too_many)
    assert e.value.field == "student_ids"
    with pytest.raises(NotFound):
        bulk(engine, pb.BulkStudentReportsRequest(course_code="NOPE"))
    for bad, field in [
        (pb.BulkStudentReportsRequest(), "student_ids"),
        (pb.BulkStudentReportsRequest(student_ids=["S1"], course_code="MATH"), "student_ids"),
        (pb.BulkStudentReportsRequest(student_ids=["S1"], output="docx"), "output"),
        (pb.BulkStudentReportsRequest(student_ids=["S1", " "]), "student_ids[1]"),
    ]:
        with pytest.raises(InvalidArgument) as e:
            bulk(engine, bad)
        assert e.value.field == field


def test_class_zip_entries_carry_real_dates_and_names_the_language(engine: ReportEngine) -> None:
    """Issue 24, files people open elsewhere: each PDF in a class ZIP is dated the last day
    with data in its report (not 2000-01-01, not the clock), so the same data still gives
    the same bytes; the archive's and the entries' names carry the semester and language."""
    req = pb.BulkStudentReportsRequest(
        student_ids=["S1", "S2", "S404"], output="zip", language="el"
    )
    f = bulk(engine, req)
    assert f.filename == "student_reports_3_students_all_el.zip"
    z = zipfile.ZipFile(io.BytesIO(f.data))
    dates = {i.filename: i.date_time for i in z.infolist()}
    assert dates == {
        "S1_performance_2026-09-07_2026-09-22_el.pdf": (2026, 9, 22, 0, 0, 0),
        "S2_performance_2026-09-15_2026-09-22_el.pdf": (2026, 9, 22, 0, 0, 0),
        "failures.csv": (2026, 9, 22, 0, 0, 0),
    }
    assert bulk(engine, req).data == f.data  # the same data, the same bytes


def test_semester_file_names_carry_the_language(engine: ReportEngine) -> None:
    f, _ = engine.render_semester("2026-fall", "csv", language="el")
    assert f.filename == "semester_2026-fall_el.csv"
    f, _ = engine.render_semester("2026-fall", "pdf")
    assert f.filename == "semester_2026-fall_en.pdf"
