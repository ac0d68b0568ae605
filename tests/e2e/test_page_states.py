"""The Export Center's loading, empty, error and done states in Chromium, against a real
gateway and real services: an empty report, a failed request, a wrong password. Each
test attacks one promise the page makes to a teacher; screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import running
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, STATIC, browser  # noqa: F401
from tests.gateway.conftest import SERVICES, seed_small

pytestmark = pytest.mark.browser
EN = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))


@pytest.fixture
def site(make_app: Callable[..., App], empty_url: str) -> Iterator[tuple[str, App]]:
    seed_small(empty_url)
    app = make_app(empty_url)
    create_user(app.engine, "teacher", PASSWORD, "operator")
    with running(app, SERVICES) as server:
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        port = gw.start()
        try:
            yield f"http://127.0.0.1:{port}", app
        finally:
            gw.stop()


@pytest.fixture
def page(browser: Any, site: tuple[str, App]) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900},
                                  locale="en-GB")  # fmt: skip
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.errors = errors
    p.goto(site[0] + "/")
    yield p
    context.close()


def sign_in(page: Any, user: str = "teacher", password: str = PASSWORD) -> None:
    from playwright.sync_api import expect

    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-btn")
    expect(page.locator("#status")).to_have_text(EN["ready"])


def students(app: App) -> tuple[str, str]:
    """A student of 2026-fall with grades, and one with nothing at all in 2026-fall (plain
    SQL: no enrolment in a live 2026-fall course and no 2026-fall highlight)."""
    with app.engine.connect() as conn:
        full = conn.execute(
            sa.text(
                "SELECT s.student_id FROM students s "
                "JOIN enrollments e ON e.student_ref = s.id JOIN courses c ON c.id = e.course_ref "
                "JOIN grades g ON g.enrollment_ref = e.id WHERE c.semester = '2026-fall' "
                "AND s.deleted_at IS NULL ORDER BY s.student_id LIMIT 1"
            )
        ).scalar_one()
        empty = conn.execute(
            sa.text(
                "SELECT s.student_id FROM students s WHERE s.deleted_at IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM enrollments e JOIN courses c ON c.id = e.course_ref "
                " WHERE e.student_ref = s.id AND c.semester = '2026-fall') AND NOT EXISTS "
                "(SELECT 1 FROM highlights h WHERE h.student_ref = s.id "
                " AND h.semester = '2026-fall') ORDER BY s.student_id LIMIT 1"
            )
        ).scalar_one()
    return full, empty


def open_student(page: Any, student_id: str) -> None:
    page.fill("#sr-query", student_id)
    page.select_option("#sr-semester", "2026-fall")
    page.click("#sr-find-btn")


def test_an_empty_report_replaces_the_previous_student_and_says_so(
    page: Any, site: tuple[str, App]
) -> None:
    """A student without data in the semester: no "Ferry cannot be reached", no status stuck
    at "Preparing the report…", and none of the previous student's charts or courses."""
    from playwright.sync_api import expect

    full, empty = students(site[1])
    sign_in(page)
    open_student(page, full)
    expect(page.locator("#status")).to_have_text(EN["reportReady"])
    assert page.locator("#sr-chart-results rect").count() >= 1
    assert page.locator("#sr-courses tbody tr").count() >= 1

    open_student(page, empty)
    expect(page.locator("#status")).to_have_text(EN["reportEmpty"])
    expect(page.locator("#sr-name")).to_contain_text(empty)
    expect(page.locator("#sr-note")).to_have_text(EN["emptyReport"])
    expect(page.locator("#alert")).to_be_hidden()
    assert page.locator("#sr-courses tbody tr").count() == 0
    for chart in ("results", "attendance", "trend"):
        assert page.locator(f"#sr-chart-{chart} rect, #sr-chart-{chart} circle").count() == 0
    expect(page.locator("#sr-summary dd[data-key=overall]")).to_have_text("0.00%")
    expect(page.locator("#sr-pdf-btn")).to_be_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#student-report").screenshot(path=str(ARTIFACTS / "state-empty-report.png"))

    # The same empty report in Greek: still no error, numbers written the Greek way.
    page.select_option("#lang", "el")
    expect(page.locator("#status")).to_have_text(EL["reportEmpty"])
    expect(page.locator("#sr-summary dd[data-key=overall]")).to_have_text("0,00%")
    assert not page.errors, page.errors


def test_a_failed_report_clears_the_status_and_the_previous_student(
    page: Any, site: tuple[str, App]
) -> None:
    from playwright.sync_api import expect

    full, _ = students(site[1])
    sign_in(page)
    open_student(page, full)
    expect(page.locator("#status")).to_have_text(EN["reportReady"])
    page.route("**/api/v1/reports/student-performance", lambda route: route.abort())
    open_student(page, full)
    expect(page.locator("#alert")).to_have_text(EN["err_NETWORK"])
    expect(page.locator("#status")).to_have_text("")
    expect(page.locator("#sr-result")).to_be_hidden()


def test_greek_numbers_on_a_report(page: Any, site: tuple[str, App]) -> None:
    """The overall percentage is written with a decimal comma in Greek (69,97), checked
    against the report's own number."""
    from playwright.sync_api import expect

    full, _ = students(site[1])
    sign_in(page)
    open_student(page, full)
    expect(page.locator("#status")).to_have_text(EN["reportReady"])
    shown = page.locator("#sr-summary dd[data-key=overall]").inner_text()
    assert re.fullmatch(r"\d+\.\d\d%", shown), shown
    page.select_option("#lang", "el")
    expect(page.locator("#sr-summary dd[data-key=overall]")).to_have_text(shown.replace(".", ","))
    assert not page.errors, page.errors


def test_the_page_language_travels_with_every_request(page: Any, site: tuple[str, App]) -> None:
    """Not the browser's language (en-GB here): the one chosen on the page."""
    from playwright.sync_api import expect

    sign_in(page)
    page.select_option("#lang", "el")
    seen: list[str | None] = []
    page.on("request", lambda r: seen.append(r.headers.get("accept-language"))
            if "/api/v1/" in r.url else None)  # fmt: skip
    page.select_option("#sem-semester", "2026-fall")
    page.click("#sem-show-btn")
    expect(page.locator("#sem-result")).to_be_visible()
    assert seen and all(h == "el" for h in seen), seen


def test_every_chart_has_its_numbers_as_a_table_and_printing_shows_only_the_report(
    page: Any, site: tuple[str, App]
) -> None:
    from playwright.sync_api import expect

    full, _ = students(site[1])
    with site[1].engine.connect() as conn:
        courses = conn.execute(
            sa.text(
                "SELECT COUNT(DISTINCT c.id) FROM courses c "
                "JOIN enrollments e ON e.course_ref = c.id JOIN students s ON s.id = e.student_ref "
                "JOIN grades g ON g.enrollment_ref = e.id "
                "WHERE s.student_id = :sid AND c.semester = '2026-fall' AND c.deleted_at IS NULL "
                "AND e.deleted_at IS NULL AND g.deleted_at IS NULL"
            ),
            {"sid": full},
        ).scalar_one()
    sign_in(page)
    open_student(page, full)
    expect(page.locator("#status")).to_have_text(EN["reportReady"])
    assert page.locator("#sr-data-results tbody tr").count() == courses
    assert (
        page.locator("#sr-data-attendance tbody tr").count()
        == page.locator("#sr-chart-attendance rect").count()
    )
    assert (
        page.locator("#sr-data-trend tbody tr").count()
        == page.locator("#sr-chart-trend circle").count()
    )
    # No attendance label runs into its bar, in either language.
    for lang in ("el", "en"):
        page.select_option("#lang", lang)
        overlap = page.evaluate("""() => {
          const svg = document.getElementById('sr-chart-attendance');
          const bars = [...svg.querySelectorAll('rect')].map((r) => r.x.baseVal.value);
          const labels = [...svg.querySelectorAll('text[x="2"]')];
          return labels.filter((x) => x.getBBox().x + x.getBBox().width > Math.min(...bars))
            .map((x) => x.textContent); }""")
        assert not overlap, (lang, overlap)
    page.emulate_media(media="print")
    expect(page.locator("#student-report")).to_be_visible()
    expect(page.locator("#sr-chart-results")).to_be_visible()
    for hidden in ("#sr-form", "#sr-pdf-btn", "#export-btn", "#jobs-table", "#semester-report"):
        expect(page.locator(hidden)).to_be_hidden()
    assert not page.errors, page.errors


def test_a_greek_page_never_shows_the_servers_english_text(
    page: Any, site: tuple[str, App]
) -> None:
    """The server's message is English and is never shown, in either language: the alert
    is the translated code with the machine reason (ErrorInfo) worded from the page's own
    string table, the field it names as a label. Without a reason it names the field."""
    from playwright.sync_api import expect

    sign_in(page)
    page.select_option("#lang", "el")
    meta = {"field": "semester", "value": "2031-fall", "known": "2026-fall, 2026-spring"}
    body = {
        "code": "INVALID_ARGUMENT",
        "reason": "UNKNOWN_VALUE",
        "metadata": meta,
        "message": "semester 'x' has no courses",
        "details": [{"type": "field_violation", "field": "semester", "description": "bad"}],
    }
    page.route("**/api/v1/reports/semesters/**",
               lambda route: route.fulfill(status=400, json=body))  # fmt: skip
    page.select_option("#sem-semester", "2026-fall")
    page.click("#sem-show-btn")
    alert = page.locator("#alert")

    def worded(table: dict[str, str]) -> str:
        why = table["why_UNKNOWN_VALUE"]
        for k, v in {**meta, "field": table["field_semester"]}.items():
            why = why.replace("{" + k + "}", v)
        return f"{table['err_INVALID_ARGUMENT']} ({why})"

    expect(alert).to_have_text(worded(EL))
    page.select_option("#lang", "en")
    expect(alert).to_have_text(worded(EN))
    assert "has no courses" not in alert.inner_text()
    # No reason the page knows: the field it names, as a label; still not the message.
    body["reason"] = "SOMETHING_NEW"
    page.click("#sem-show-btn")
    expect(alert).to_have_text(f"{EN['err_INVALID_ARGUMENT']} ({EN['field_semester']})")


def test_a_failed_job_says_why_in_the_pages_words(page: Any, site: tuple[str, App]) -> None:
    """A failed export job shows its machine reason worded from the page's tables, in
    either language, never the server's English error_message."""
    from playwright.sync_api import expect

    failed = {
        "id": "j-1", "export_type": "grades", "format": "pdf",
        "status": "EXPORT_JOB_STATUS_FAILED", "created_at": "2026-12-06T10:00:00Z",
        "error_message": "a pdf export holds at most 200,000 rows and this one has more",
        "error_reason": "TOO_MANY_ROWS", "error_metadata": {"max": "200000", "field": "limit"},
    }  # fmt: skip
    page.route("**/api/v1/exports?*", lambda route: route.fulfill(json={"jobs": [failed]}))
    sign_in(page)
    cell = page.locator("#jobs-table tbody tr .error-text")
    expect(cell).to_have_text(EN["why_TOO_MANY_ROWS"].replace("{max}", "200000"))
    page.select_option("#lang", "el")
    expect(cell).to_have_text(EL["why_TOO_MANY_ROWS"].replace("{max}", "200000"))
    assert "holds at most" not in page.locator("#jobs-table").inner_text()


def test_sign_in_and_a_report_work_from_the_keyboard(page: Any, site: tuple[str, App]) -> None:
    from playwright.sync_api import expect

    full, _ = students(site[1])
    page.keyboard.press("Tab")  # the language drop-down comes first, then the sign-in form
    for _ in range(10):
        if page.evaluate("document.activeElement.id") == "username":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type("teacher")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(EN["ready"])
    page.focus("#sr-query")
    page.keyboard.type(full)
    page.keyboard.press("Enter")
    expect(page.locator("#sr-name")).to_contain_text(full)
    page.locator("#sr-result details summary").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sr-data-results")).to_be_visible()


def test_the_status_line_never_says_ready_under_an_alert(page: Any) -> None:
    from playwright.sync_api import expect

    page.route("**/api/v1/sessions/semesters", lambda route: route.abort())
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#alert")).to_have_text(EN["err_NETWORK"])
    page.wait_for_timeout(300)
    expect(page.locator("#status")).not_to_have_text(EN["ready"])
