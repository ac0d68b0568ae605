"""Small dead ends of the Export Center, each a state tested in Chromium against real
services: a refused sign-in, the phone width, jobs that say when and what, a status
filter that offers its values, field names as labels, and honest delivery with the log
channel (the default). Screenshots at 390 px and 1440 px, English and Greek, go to
test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import running
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, browser  # noqa: F401
from tests.e2e.test_page_states import EL, EN, open_student, sign_in, students
from tests.gateway.conftest import SERVICES, seed_small
from tests.notify.helpers import eventually, free_port

pytestmark = pytest.mark.browser


@pytest.fixture
def site(make_app: Callable[..., App], empty_url: str) -> Iterator[tuple[str, App]]:
    """Every service on one known port, so export jobs reach notify; the log channel."""
    seed_small(empty_url)
    port = free_port()
    app = make_app(
        empty_url,
        FERRY_SERVER_ADDRESS=f"127.0.0.1:{port}",
        FERRY_CLIENT_TARGET=f"127.0.0.1:{port}",
        FERRY_NOTIFY_POLL_SECONDS="0.1",
        FERRY_EXPORT_POLL_SECONDS="0.1",
    )
    assert app.settings.notify.channels == ["log"]
    create_user(app.engine, "teacher", PASSWORD, "operator")
    create_user(app.engine, "head", PASSWORD, "admin")
    with running(app, SERVICES) as server:
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        gport = gw.start()
        try:
            yield f"http://127.0.0.1:{gport}", app
        finally:
            gw.stop()


@pytest.fixture
def page(browser: Any, site: tuple[str, App]) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 900},
                                  locale="en-GB")  # fmt: skip
    p = context.new_page()
    p.set_default_timeout(20_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.errors = errors
    p.goto(site[0] + "/")
    yield p
    context.close()


def test_a_wrong_password_says_so_and_the_status_does_not_keep_signing_in(page: Any) -> None:
    from playwright.sync_api import expect

    page.fill("#username", "teacher")
    page.fill("#password", "not the password")
    page.click("#login-btn")
    expect(page.locator("#alert")).to_have_text(EN["err_BAD_LOGIN"])
    expect(page.locator("#status")).to_have_text("")
    expect(page.locator("#login-panel")).to_be_visible()
    page.select_option("#lang", "el")
    expect(page.locator("#alert")).to_have_text(EL["err_BAD_LOGIN"])
    expect(page.locator("#status")).to_have_text("")


def test_the_layout_holds_at_390_and_1440_px_in_both_languages(
    page: Any, site: tuple[str, App], backend: str
) -> None:
    from playwright.sync_api import expect

    full, _ = students(site[1])
    sign_in(page)
    open_student(page, full)
    expect(page.locator("#status")).to_have_text(EN["reportReady"])
    page.select_option("#sem-semester", "2026-fall")
    page.click("#sem-show-btn")
    expect(page.locator("#sem-result")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    for lang in ("en", "el"):
        page.select_option("#lang", lang)
        for width in (390, 1440):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(100)
            wide = page.evaluate("document.documentElement.scrollWidth")
            over = page.evaluate(f"""() => [...document.querySelectorAll('body *')]
              .filter((e) => e.getBoundingClientRect().right > {width} + 1)
              .map((e) => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)""")
            assert wide <= width, f"{lang} at {width} px scrolls sideways to {wide} px: {over}"
            # No drop-down cuts its chosen text.
            cut = page.evaluate("""() => [...document.querySelectorAll('select')]
              .filter((s) => s.offsetParent && s.selectedIndex >= 0)
              .filter((s) => {
                const c = document.createElement('canvas').getContext('2d');
                c.font = getComputedStyle(s).font;
                const text = s.options[s.selectedIndex].text;
                return c.measureText(text).width > s.clientWidth - 8;
              }).map((s) => s.id)""")
            assert not cut, (lang, width, cut)
            page.screenshot(path=str(ARTIFACTS / f"page-{backend}-{lang}-{width}.png"),
                            full_page=True)  # fmt: skip
    assert not page.errors, page.errors


def test_jobs_show_when_and_what_and_the_status_filter_offers_its_values(
    page: Any, site: tuple[str, App]
) -> None:
    from playwright.sync_api import expect

    sign_in(page)
    values = page.eval_on_selector_all("#job-status option", "os => os.map((o) => o.value)")
    with site[1].engine.connect() as conn:
        stored = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT status FROM students"))}
    assert set(values) - {""} >= stored, (values, stored)
    page.select_option("#job-type", "students")
    page.select_option("#job-status", "graduated")
    page.click("#job-btn")
    row = page.locator("#jobs-table tbody tr").first
    expect(row).to_contain_text(EN["EXPORT_JOB_STATUS_COMPLETED"])
    expect(row).to_contain_text(f"{EN['status']}: {EN['st_graduated']}")
    assert re.search(r"\d{2}/\d{2}/\d{4}", row.inner_text()), row.inner_text()
    page.select_option("#lang", "el")
    expect(row).to_contain_text(f"{EL['status']}: {EL['st_graduated']}")
    labels = page.eval_on_selector_all("#job-status option", "os => os.map((o) => o.text)")
    assert EL["st_graduated"] in labels and "graduated" not in labels


def test_the_log_channel_is_never_called_sent_and_email_me_asks_for_an_address(
    page: Any, site: tuple[str, App]
) -> None:
    """With only the log channel no mail leaves: the page says so when the job starts and
    in the admin's list; "Email me when done" asks for the address in place."""
    from playwright.sync_api import expect

    page.fill("#username", "head")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#status")).to_have_text(EN["ready"])
    page.select_option("#job-type", "students")
    page.check("#job-notify-me")
    page.click("#job-btn")
    expect(page.locator("#alert")).to_have_text(EN["err_NEED_ADDRESS"])
    expect(page.locator("#job-my-email")).to_be_focused()
    assert "(head)" not in page.locator("#alert").inner_text()
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.fill("#job-my-email", "head@school.example")
    page.click("#job-btn")
    expect(page.locator("#status")).to_contain_text("head@school.example")
    status = page.locator("#status").inner_text()
    assert "will get a mail" not in status and EN["startedLogged"].split("{")[0] in status
    expect(page.locator("#job-notify-me-hint")).to_be_hidden()
    with site[1].engine.connect() as conn:  # saved on the admin's account, once
        saved = conn.execute(sa.text("SELECT email FROM users WHERE username = 'head'"))
        assert saved.scalar_one() == "head@school.example"

    def logged() -> bool:
        page.click("#notify-refresh")
        return EN["loggedNoMail"] in (page.locator("#notify-table tbody").inner_text() or "")

    eventually(logged, 60, 0.5)
    assert EN["NOTIFICATION_STATUS_SENT"] not in page.locator("#notify-table tbody").inner_text()

    # Asked once: the next job uses the kept address without asking.
    page.click("#job-btn")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    expect(page.locator("#alert")).to_be_hidden()


def test_a_preview_names_fields_as_labels(page: Any, site: tuple[str, App], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    app = site[1]
    sign_in(page)
    page.select_option("#semester", "2026-fall")
    page.select_option("#bundle-format", "json")
    with page.expect_download() as dl:
        page.click("#export-btn")
    bundle = tmp_path / dl.value.suggested_filename
    dl.value.save_as(bundle)
    with app.engine.begin() as conn:
        conn.execute(sa.text("UPDATE courses SET title = 'Renamed' WHERE semester = '2026-fall'"))
    page.set_input_files("#import-file", str(bundle))
    page.click("#preview-btn")
    expect(page.locator("#import-result")).to_contain_text(f"{EN['field_title']}: Renamed")
    assert "title: Renamed" not in page.locator("#import-result").inner_text()
    page.select_option("#lang", "el")
    expect(page.locator("#import-result")).to_contain_text(f"{EL['field_title']}: Renamed")


def test_lists_refresh_by_themselves(browser: Any, site: tuple[str, App]) -> None:  # noqa: F811
    """A job started elsewhere (here: straight through the REST API) appears on an open
    page without a click."""
    import httpx
    from playwright.sync_api import expect

    base = site[0]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.add_init_script("window.FERRY_REFRESH_MS = 300")
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(base + "/")
    sign_in(page)
    expect(page.locator("#jobs-empty")).to_be_visible()
    token = httpx.post(f"{base}/api/v1/auth/login",
                       json={"username": "head", "password": PASSWORD}).json()["token"]  # fmt: skip
    r = httpx.post(f"{base}/api/v1/exports", headers={"Authorization": f"Bearer {token}"},
                   json={"export_type": "courses", "format": "json"})  # fmt: skip
    assert r.status_code == 200, r.text
    row = page.locator("#jobs-table tbody tr").first
    expect(row).to_contain_text(EN["courses"])
    expect(row).to_contain_text(EN["EXPORT_JOB_STATUS_COMPLETED"])
    expect(page.locator("#jobs-empty")).to_be_hidden()
    context.close()


def test_a_refused_undo_names_the_later_imports_as_the_history_shows_them(
    page: Any, site: tuple[str, App], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    app = site[1]
    sign_in(page)
    page.select_option("#semester", "2026-fall")
    page.select_option("#bundle-format", "json")
    with page.expect_download() as dl:
        page.click("#export-btn")
    bundle = tmp_path / dl.value.suggested_filename
    dl.value.save_as(bundle)
    for title in ("Renamed once", "Renamed twice"):  # two imports change the same rows
        with app.engine.begin() as conn:
            conn.execute(sa.text("UPDATE courses SET title = :t WHERE semester = '2026-fall'"),
                         {"t": title})  # fmt: skip
        page.set_input_files("#import-file", str(bundle))
        page.click("#preview-btn")
        expect(page.locator("#import-btn")).to_be_enabled()
        page.click("#import-btn")
        expect(page.locator("#status")).to_have_text(EN["imported"])
    done = page.locator("#imports-table tbody tr", has_text=EN["IMPORT_STATUS_COMPLETED"])
    expect(done).to_have_count(2)
    with app.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM imports"))]
    page.once("dialog", lambda d: d.accept())
    done.nth(1).get_by_role("button", name=EN["undo"]).click()  # the older import
    alert = page.locator("#alert")
    expect(alert).to_contain_text(EN["err_UNDO_LATER"])
    expect(alert).to_contain_text(f"{bundle.name} · teacher")
    assert not [i for i in ids if i in alert.inner_text()]
    expect(page.locator("#status")).to_have_text("")
    expect(done.first).to_contain_text("teacher")
