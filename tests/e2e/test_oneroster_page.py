"""OneRoster on the Export Center page, in a real browser (Debian's Chromium, headless,
Playwright) against a real gateway and services (issue 28): the export box writes a
OneRoster zip the validator accepts; the import box takes a OneRoster zip, told by its
content or with the format chosen, and shows the loss report in the preview and the
result; the preview states the empty-cell rule (issue 21)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.oneroster.validate import read_package
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, STATIC, browser, site  # noqa: F401
from tests.oneroster.corpus import package

pytestmark = pytest.mark.browser
EN = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
UNDER = (
    "JOIN enrollments e ON e.id = x.enrollment_ref JOIN courses c ON c.id = e.course_ref "
    "JOIN students s ON s.id = e.student_ref WHERE c.semester = '2026-fall' "
    "AND x.deleted_at IS NULL AND e.deleted_at IS NULL AND c.deleted_at IS NULL "
    "AND s.deleted_at IS NULL"
)


def _not_exported(app: App) -> dict[str, int]:
    """Live records of 2026-fall that OneRoster has no place for, by plain SQL."""
    with app.engine.connect() as conn:
        one = conn.execute(
            sa.text(
                f"SELECT (SELECT count(*) FROM attendance x {UNDER}), "
                f"(SELECT count(*) FROM daily_performance x {UNDER}), "
                "(SELECT count(*) FROM highlights x JOIN students s ON s.id = x.student_ref "
                "WHERE x.semester = '2026-fall' AND x.deleted_at IS NULL "
                "AND s.deleted_at IS NULL)"
            )
        ).one()
    return dict(zip(("attendance", "daily_performance", "highlights"), one, strict=True))


def _students(app: App) -> set[str]:
    with app.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.text("SELECT student_id FROM students"))}


def test_a_teacher_exports_and_imports_oneroster_and_reads_the_loss_report(
    browser: Any,  # noqa: F811
    site: tuple[str, App],  # noqa: F811
    backend: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    base, app = site
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20_000)
    page.goto(base + "/")
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#workspace")).to_be_visible()

    # The export box offers OneRoster for a semester: a zip the validator accepts.
    page.select_option("#semester", "2026-fall")
    expect(page.locator("#oneroster-export-note")).to_be_hidden()
    page.select_option("#bundle-format", "oneroster")
    expect(page.locator("#oneroster-export-note")).to_have_text(EN["oneRosterExportNote"])
    with page.expect_download() as dl:
        page.click("#export-btn")
    exported = tmp_path / "roster.zip"
    dl.value.save_as(exported)
    assert dl.value.suggested_filename.endswith(".zip")
    pkg = read_package(io.BytesIO(exported.read_bytes()))
    assert pkg.errors == [] and pkg.warnings == []
    # After the download, the loss report of that export: what OneRoster has no place
    # for, counted as plain SQL counts the semester's live records, in English and Greek.
    lost = page.locator("#export-loss-report li")
    expect(page.locator("#oneroster-export-loss")).to_contain_text(EN["lossExportTitle"])
    for entity, n in _not_exported(app).items():
        line = lost.filter(has_text=f"{EN[f'entity_{entity}']}: {n} not exported")
        expect(line, str(lost.all_inner_texts())).to_have_count(1)
        expect(line).to_contain_text(EN["why_LOSS_NO_RECORDS"])
    page.select_option("#lang", "el")
    for entity, n in _not_exported(app).items():
        line = lost.filter(has_text=f"{EL[f'entity_{entity}']}: {n} δεν εξήχθησαν")
        expect(line).to_contain_text(EL["why_LOSS_NO_RECORDS"])
    page.screenshot(path=str(ARTIFACTS / f"oneroster-{backend}-export-loss-el.png"), full_page=True)
    page.select_option("#lang", "en")

    # A package from another system, under a name that tells nothing: the format is told
    # by the content (the import box left on "Detect from the file").
    other = tmp_path / "from-the-sis"
    other.write_bytes(package())
    before = _students(app)
    page.set_input_files("#import-file", str(other))
    page.click("#preview-btn")
    expect(page.locator("#import-result h3")).to_have_text(EN["previewTitle"])
    loss = page.locator("#loss-report li")
    expect(page.locator("#import-result")).to_contain_text(EN["lossReport"])
    expect(loss.filter(has_text="users: 1 not imported")).to_contain_text("u-g1 (guardian)")
    expect(page.locator("#empty-cell-rule")).to_have_text(EN["emptyCellRule"])
    assert _students(app) == before  # a preview changes nothing
    page.screenshot(path=str(ARTIFACTS / f"oneroster-{backend}-preview.png"), full_page=True)
    page.click("#import-btn")
    expect(page.locator("#status")).to_have_text(EN["imported"])
    expect(page.locator("#import-result h3")).to_have_text(EN["resultTitle"])
    expect(page.locator("#loss-report li").first).to_be_visible()
    assert len(_students(app)) == len(before) + 2

    # Ferry's own export back, the format chosen: nothing changes, the loss report says
    # what OneRoster carries that Ferry has no place for (the org's name).
    page.select_option("#import-format", "oneroster")
    page.set_input_files("#import-file", str(exported))
    page.click("#preview-btn")
    expect(page.locator("#import-result h3")).to_have_text(EN["previewTitle"])
    expect(page.locator("#loss-report")).to_contain_text("orgs · name: 1 not imported")
    for cell in ("created", "updated", "deleted"):
        column = ["entity", "created", "updated", "unchanged", "skipped", "unmatched", "deleted"]
        cells = page.locator(f"#import-result tbody td:nth-child({column.index(cell) + 1})")
        assert set(cells.all_inner_texts()) <= {"0"}, cell
    page.screenshot(path=str(ARTIFACTS / f"oneroster-{backend}-own.png"), full_page=True)
    assert not errors, errors
    context.close()
