"""The page and the schools (docs/tenants.md), in Chromium against a real gateway and real
services on PostgreSQL with two schools: a school's user sees the name of their school and
only its imports; a platform admin sees nothing until a school is picked, then every
request carries it (X-Ferry-School) and the lists are that school's; both in English and
Greek."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferry import users
from ferry.app import App
from ferry.bundle.formats.base import Event
from ferry.db import tenant
from gateway.server import GatewayServer
from tests.conftest import make_settings, running
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, STATIC, browser  # noqa: F401
from tests.gateway.conftest import SERVICES
from tests.merge.helpers import run
from tests.tenants.conftest import Tenancy, source_events, tenancy  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
EN = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))


@pytest.fixture
def site(
    tenancy: Tenancy,  # noqa: F811
    source_events: list[Event],  # noqa: F811
    tmp_path: Path,
) -> Iterator[str]:
    t = tenancy
    with t.platform.begin() as conn:
        conn.execute(sa.text("UPDATE schools SET name = 'North Campus' WHERE code = 'north'"))
    with tenant.acting_for(t.schools["north"]):
        run(t.app, source_events)
    app = App(make_settings(t.app_url, tmp_path))
    users.create_user(app.engine, "nora", PASSWORD, "operator", school_id=t.schools["north"])
    users.create_user(app.engine, "sam", PASSWORD, "operator", school_id=t.schools["south"])
    users.create_user(app.engine, "pat", PASSWORD, "platform_admin")
    try:
        with running(app, SERVICES) as server:
            gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
            port = gw.start()
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                gw.stop()
    finally:
        app.close()


@pytest.fixture
def page(browser: Any, site: str) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.errors = errors
    sent: list[dict[str, str]] = []
    p.on(
        "request", lambda r: sent.append({"url": r.url, **r.headers}) if "/api/" in r.url else None
    )
    p.sent = sent
    p.goto(site + "/")
    yield p
    context.close()


def _sign_in(page: Any, user: str) -> None:
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#login-btn")


def test_a_schools_user_sees_their_school_and_its_imports_only(page: Any) -> None:
    from playwright.sync_api import expect

    _sign_in(page, "nora")
    expect(page.locator("#status")).to_have_text(EN["ready"])
    expect(page.locator("#school")).to_have_text("School: North Campus")
    expect(page.locator("#school-picker")).to_be_hidden()
    expect(page.locator("#imports-table tbody tr")).to_have_count(1)
    page.select_option("#lang", "el")
    expect(page.locator("#school")).to_have_text("Σχολείο: North Campus")
    page.screenshot(path=str(ARTIFACTS / "school-user-el.png"))
    page.click("#signout")
    _sign_in(page, "sam")  # south: the same page, nothing of north
    expect(page.locator("#status")).to_have_text(EL["ready"])
    expect(page.locator("#school")).to_have_text("Σχολείο: south")
    expect(page.locator("#imports-empty")).to_be_visible()
    assert not any("x-ferry-school" in r for r in page.sent)
    assert page.errors == []


def test_a_platform_admin_picks_the_school_of_every_request(page: Any) -> None:
    from playwright.sync_api import expect

    _sign_in(page, "pat")
    expect(page.locator("#status")).to_have_text(EN["schoolPickFirst"])
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#school")).to_be_hidden()
    options = page.locator("#school-pick option")
    expect(options).to_have_text(
        ["Choose a school", "Default school (default)", "North Campus (north)", "south"]
    )
    before = len(page.sent)
    page.select_option("#school-pick", "north")
    expect(page.locator("#status")).to_have_text(EN["ready"])
    expect(page.locator("#imports-table tbody tr")).to_have_count(1)
    picked = [r for r in page.sent[before:] if "/auth/schools" not in r["url"]]
    assert picked and all(r.get("x-ferry-school") == "north" for r in picked), picked
    before = len(page.sent)
    page.select_option("#school-pick", "south")
    expect(page.locator("#imports-empty")).to_be_visible()
    picked = [r for r in page.sent[before:] if "/auth/schools" not in r["url"]]
    assert picked and all(r.get("x-ferry-school") == "south" for r in picked), picked
    page.select_option("#lang", "el")
    expect(page.locator("#school-pick option").first).to_have_text("Επιλέξτε σχολείο")
    expect(page.locator("#school-pick")).to_have_value("south")  # the choice stays
    expect(page.locator("label[for=school-pick]")).to_have_text("Σχολείο")
    page.screenshot(path=str(ARTIFACTS / "school-picker-el.png"))
    page.reload()  # the choice lives with the session
    expect(page.locator("#school-pick")).to_have_value("south")
    expect(page.locator("#imports-empty")).to_be_visible()
    assert page.errors == []
