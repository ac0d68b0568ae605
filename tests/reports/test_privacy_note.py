"""Issue 22: the privacy note under a student's courses names the threshold in force
(reports.class_size), in English and Greek, and the numbers follow the same setting: the
note said "at least 5" whatever was configured."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ferry.app import App
from ferry.reports.engine import ReportEngine
from ferry.v1 import reports_pb2 as pb
from tests.reports.test_files import text

NOTE = {
    "en": "Class averages are shown only for classes with at least {n} graded students.",
    "el": "τουλάχιστον {n} βαθμολογημένους μαθητές",
}


@pytest.mark.parametrize("size", [2, 5, 6])
@pytest.mark.parametrize("language", ["en", "el"])
def test_the_note_names_the_configured_class_size(
    school_url: str, make_app: Callable[..., App], size: int, language: str
) -> None:
    app = make_app(school_url, FERRY_PLUGINS_SERVICES_REPORTS_CLASS_SIZE=str(size))
    engine = ReportEngine.from_app(app)
    req = pb.GetStudentReportRequest(student_id="S1", semester="2026-fall", language=language)
    report, _ = engine.student_from(req)
    assert report.min_class_size == size
    courses = {c.course_code: c for c in report.courses}
    # MATH has 5 live graded students, ART 2 (tests/reports/helpers.py).
    assert courses["MATH"].has_class_average == (size <= 5)
    assert courses["ART"].has_class_average == (size <= 2)
    f, _ = engine.render_student(req, "pdf")
    words = " ".join(text(f.data).split())
    assert NOTE[language].format(n=size) in words
    others = {2, 5, 6} - {size}
    assert not any(NOTE[language].format(n=n) in words for n in others)
