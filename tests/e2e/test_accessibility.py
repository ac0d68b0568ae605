"""axe-core (tests/e2e/package.json, installed by `make test`) over the Export Center's
states in Chromium, English and Greek: zero serious or critical violations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.app import App
from tests.conftest import IN_CI
from tests.e2e.test_export_center import browser  # noqa: F401
from tests.e2e.test_page_states import EN, open_student, sign_in, site, students  # noqa: F401

pytestmark = pytest.mark.browser
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture
def page(browser: Any, site: tuple[str, App]) -> Iterator[Any]:  # noqa: F811
    if not os.access(AXE, os.R_OK):
        message = f"{AXE} is missing (make test runs npm ci --prefix tests/e2e)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # The page's CSP allows no inline script; the checker is injected as one.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900},
                                  locale="en-GB")  # fmt: skip
    p = context.new_page()
    p.set_default_timeout(15_000)
    p.goto(site[0] + "/")
    yield p
    context.close()


def serious(page: Any) -> list[str]:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
          .filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => `${v.impact} ${v.id}: ${v.help} -> ` +
               v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', '))"""
    )
    return list(found)


def test_no_serious_accessibility_violation_in_any_state(
    page: Any,
    site: tuple[str, App],  # noqa: F811  (the fixture imported above)
) -> None:
    from playwright.sync_api import expect

    full, empty = students(site[1])
    problems: dict[str, list[str]] = {}

    def check(state: str) -> None:
        for lang in ("en", "el"):
            page.select_option("#lang", lang)
            if found := serious(page):
                problems[f"{state} ({lang})"] = found
        page.select_option("#lang", "en")

    check("sign-in")
    page.fill("#username", "teacher")
    page.fill("#password", "wrong")
    page.click("#login-btn")
    expect(page.locator("#alert")).to_be_visible()
    check("refused sign-in")
    sign_in(page)
    check("workspace")
    open_student(page, full)
    expect(page.locator("#status")).to_have_text(EN["reportReady"])
    check("student report")
    open_student(page, empty)
    expect(page.locator("#status")).to_have_text(EN["reportEmpty"])
    check("empty student report")
    page.select_option("#sem-semester", "2026-fall")
    page.click("#sem-show-btn")
    expect(page.locator("#sem-result")).to_be_visible()
    check("semester report")
    page.select_option("#job-type", "students")
    page.click("#job-btn")
    expect(page.locator("#jobs-table tbody tr").first).to_contain_text(
        EN["EXPORT_JOB_STATUS_COMPLETED"]
    )
    check("finished job")
    assert not problems, problems
