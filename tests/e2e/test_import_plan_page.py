"""The page's Import after Preview applies exactly the previewed plan: data changed in
between is refused with the change named, nothing is written, and the page asks for a
new preview (a real browser against a real gateway and services)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from tests.e2e.test_export_center import PASSWORD, _titles, browser, site  # noqa: F401

pytestmark = pytest.mark.browser


def test_import_after_preview_is_refused_when_the_data_changed_in_between(
    browser: Any,  # noqa: F811
    site: tuple[str, App],  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    base, app = site
    context = browser.new_context(accept_downloads=True, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(base + "/")
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#status")).to_have_text("Ready.")
    page.select_option("#semester", "2026-fall")
    page.select_option("#bundle-format", "json")
    with page.expect_download() as dl:
        page.click("#export-btn")
    bundle = tmp_path / "fall.json"
    dl.value.save_as(bundle)
    with app.engine.begin() as conn:
        conn.execute(sa.text("UPDATE courses SET title = 'Renamed' WHERE semester = '2026-fall'"))
    page.set_input_files("#import-file", str(bundle))
    page.click("#preview-btn")
    expect(page.locator("#import-btn")).to_be_enabled()
    # Someone edits a course after the preview.
    with app.engine.begin() as conn:
        code = conn.execute(
            sa.text("SELECT course_code FROM courses WHERE semester = '2026-fall' LIMIT 1")
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE courses SET title = 'Edited', updated_at = :t WHERE course_code = :c"),
            {"t": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), "c": code},
        )
    before = _titles(app)
    page.click("#import-btn")
    expect(page.locator(".plan-note")).to_have_text(
        "The data changed since the preview; preview again."
    )
    expect(page.locator("#import-btn")).to_be_disabled()
    assert _titles(app) == before
    # A new preview's plan applies.
    page.click("#preview-btn")
    expect(page.locator("#import-btn")).to_be_enabled()
    page.click("#import-btn")
    expect(page.locator("#status")).to_have_text("Import finished.")
    expect(page.locator(".plan-note")).to_have_text("Applied exactly the previewed plan.")
    assert "Renamed" not in _titles(app)
    context.close()
