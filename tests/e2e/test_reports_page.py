"""The Export Center's report sections in a real browser (Chromium via Playwright) against
a real gateway and real services: a student's report with its charts and downloads, a
semester's students at risk, a class as a ZIP and as one PDF, and Greek. Screenshots go
to test-artifacts/."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from ferry.app import App
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import running
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, STATIC, browser  # noqa: F401
from tests.gateway.conftest import SERVICES, seed_small

pytestmark = pytest.mark.browser


@pytest.fixture
def site(make_app: Callable[..., App], empty_url: str) -> Iterator[tuple[str, App]]:
    seed_small(empty_url)
    app = make_app(empty_url)
    create_user(app.engine, "teacher", PASSWORD, "operator")
    with running(app, SERVICES) as server:  # export, import and reports
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        port = gw.start()
        try:
            yield f"http://127.0.0.1:{port}", app
        finally:
            gw.stop()


def _pick(app: App) -> tuple[str, str, str]:
    """A student of 2026-fall with grades (id, first name), and a course of that semester."""
    with app.engine.connect() as conn:
        sid, first = conn.execute(
            sa.text(
                "SELECT s.student_id, s.first_name FROM students s "
                "JOIN enrollments e ON e.student_ref = s.id JOIN courses c ON c.id = e.course_ref "
                "JOIN grades g ON g.enrollment_ref = e.id WHERE c.semester = '2026-fall' "
                "AND s.deleted_at IS NULL ORDER BY s.student_id LIMIT 1"
            )
        ).one()
        course = conn.execute(
            sa.text(
                "SELECT course_code FROM courses WHERE semester = '2026-fall' "
                "AND deleted_at IS NULL ORDER BY course_code LIMIT 1"
            )
        ).scalar_one()
    return sid, first, course


def test_reports_on_the_page(
    browser: Any,  # noqa: F811  (the fixture imported above)
    site: tuple[str, App],
    backend: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    base, app = site
    sid, first, course = _pick(app)
    ARTIFACTS.mkdir(exist_ok=True)
    shots = 0

    def shot(name: str) -> None:
        nonlocal shots
        shots += 1
        page.screenshot(path=str(ARTIFACTS / f"reports-{backend}-{shots:02d}-{name}.png"),
                        full_page=True)  # fmt: skip

    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900},
                                  locale="en-GB")  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(15_000)
    page.goto(base + "/")
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#status")).to_have_text("Ready.")

    # Student report: find by id, see the summary and its charts, download PDF and CSV.
    page.fill("#sr-query", sid)
    page.select_option("#sr-semester", "2026-fall")
    page.click("#sr-find-btn")
    expect(page.locator("#status")).to_have_text("Report ready.")
    expect(page.locator("#sr-name")).to_contain_text(sid)
    expect(page.locator("#sr-summary dd[data-key=gpa]")).to_have_text(re.compile(r"^\d\.\d\d$"))
    assert page.locator("#sr-chart-results rect").count() >= 1
    assert page.locator("#sr-chart-attendance rect").count() >= 1
    assert page.locator("#sr-courses tbody tr").count() >= 1
    page.locator("#student-report").scroll_into_view_if_needed()
    shot("student")
    with page.expect_download() as dl:
        page.click("#sr-pdf-btn")
    name = dl.value.suggested_filename
    assert name.startswith(f"{sid}_performance_") and name.endswith(".pdf")
    pdf = PdfReader(dl.value.path())
    assert first in pdf.pages[0].extract_text()
    with page.expect_download() as dl:
        page.click("#sr-csv-btn")
    assert "# Courses" in Path(dl.value.path()).read_text(encoding="utf-8")

    # Search by name: several matches are listed as buttons.
    page.fill("#sr-query", first[:1])
    page.click("#sr-find-btn")
    expect(page.locator("#sr-matches")).to_be_visible()

    # Semester report with the students at risk.
    page.select_option("#sem-semester", "2026-fall")
    page.click("#sem-show-btn")
    expect(page.locator("#sem-summary")).to_contain_text("2026-fall")
    risk = page.locator("#sem-risk tbody tr")
    assert risk.count() > 0 or page.locator("#sem-risk-none").is_visible()
    page.locator("#semester-report").scroll_into_view_if_needed()
    shot("semester")
    with page.expect_download() as dl:
        page.click("#sem-pdf-btn")
    assert dl.value.suggested_filename == "semester_2026-fall_en.pdf"

    # Class reports: a ZIP of PDFs, then one PDF with a bookmark per student.
    page.select_option("#cls-semester", "2026-fall")
    page.click("#cls-load-btn")
    expect(page.locator("#cls-btn")).to_be_enabled()
    page.select_option("#cls-course", course)
    page.select_option("#cls-output", "zip")
    with page.expect_download() as dl:
        page.click("#cls-btn")
    assert dl.value.suggested_filename == f"student_reports_{course}_2026-fall_en.zip"
    names = zipfile.ZipFile(dl.value.path()).namelist()
    assert names and all(n.endswith(".pdf") or n == "failures.csv" for n in names)
    page.select_option("#cls-output", "pdf")
    with page.expect_download() as dl:
        page.click("#cls-btn")
    merged = PdfReader(io.BytesIO(Path(dl.value.path()).read_bytes()))
    assert len(merged.outline) >= len([n for n in names if n.endswith(".pdf")])
    page.locator("#class-reports").scroll_into_view_if_needed()
    shot("class")

    # Greek: the sections and what is on screen switch language.
    page.select_option("#lang", "el")
    el = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
    expect(page.locator("#sr-h")).to_have_text(el["studentReport"])
    expect(page.locator("#sem-h")).to_have_text(el["semesterReport"])
    expect(page.locator("#cls-h")).to_have_text(el["classReports"])
    expect(page.locator("#sr-summary dt").first).to_have_text(el["sum_overall"])
    expect(page.locator("#sr-pdf-btn")).to_have_text(el["downloadPdf"])
    shot("greek")
    # ... and so do the files it hands out: the Greek page's PDFs are Greek (they were English).
    with page.expect_download() as dl:
        page.click("#sr-pdf-btn")
    text = PdfReader(dl.value.path()).pages[0].extract_text()
    assert "Αναφορά μαθητή" in text and "Student report" not in text
    with page.expect_download() as dl:
        page.click("#sem-pdf-btn")
    assert "Αναφορά" in PdfReader(dl.value.path()).pages[0].extract_text()
    page.select_option("#cls-output", "pdf")
    with page.expect_download() as dl:
        page.click("#cls-btn")
    assert "Αναφορά μαθητή" in PdfReader(dl.value.path()).pages[0].extract_text()
    assert not errors, errors
    context.close()
