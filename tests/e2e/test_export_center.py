"""The Export Center page in a real browser (Debian's Chromium, driven by Playwright)
against a real gateway and real services: sign in, export, preview, import, undo, an
entity export watched to completion, and Greek. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import IN_CI, running
from tests.gateway.conftest import SERVICES, seed_small

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"
PASSWORD = "a teacher's password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


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


def _titles(app: App) -> set[str]:
    with app.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT title FROM courses WHERE semester = '2026-fall'"))
        return {r[0] for r in rows}


def test_a_teacher_exports_imports_undoes_and_watches_a_job(
    browser: Any, site: tuple[str, App], backend: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base, app = site
    ARTIFACTS.mkdir(exist_ok=True)
    shots = 0

    def shot(name: str) -> None:
        nonlocal shots
        shots += 1
        page.screenshot(path=str(ARTIFACTS / f"export-center-{backend}-{shots:02d}-{name}.png"),
                        full_page=True)  # fmt: skip

    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900},
                                  locale="en-GB")  # fmt: skip
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(15_000)
    page.goto(base + "/")
    expect(page.locator("#login-panel")).to_be_visible()
    shot("sign-in")

    # Sign in.
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Ready.")
    shot("signed-in")

    # Export a semester: the file downloads with its name and parses.
    page.select_option("#semester", "2026-fall")
    page.select_option("#bundle-format", "json")
    with page.expect_download() as dl:
        page.click("#export-btn")
    download = dl.value
    assert download.suggested_filename.startswith("session_2026-fall_")
    assert download.suggested_filename.endswith(".json")
    bundle = tmp_path / download.suggested_filename
    download.save_as(bundle)
    assert json.loads(bundle.read_bytes())["metadata"]["semester"] == "2026-fall"
    shot("exported")

    # Preview and import it after the courses were renamed here; then undo.
    original = _titles(app)
    with app.engine.begin() as conn:
        conn.execute(sa.text("UPDATE courses SET title = 'Renamed' WHERE semester = '2026-fall'"))
    page.set_input_files("#import-file", str(bundle))
    expect(page.locator("#import-btn")).to_be_disabled()
    page.click("#preview-btn")
    expect(page.locator("#import-result h3")).to_have_text("Preview: what the import would do")
    expect(page.locator("#import-btn")).to_be_enabled()
    assert _titles(app) == {"Renamed"}
    shot("preview")
    page.click("#import-btn")
    expect(page.locator("#status")).to_have_text("Import finished.")
    expect(page.locator("#import-result h3")).to_have_text("What the import did")
    assert _titles(app) == original
    expect(page.locator("#imports-table tbody tr").first).to_contain_text("Imported")
    shot("imported")
    page.once("dialog", lambda d: d.accept())
    page.locator("#imports-table tbody tr").first.get_by_role("button", name="Undo").click()
    expect(page.locator("#status")).to_have_text("The import was undone.")
    expect(page.locator("#imports-table tbody tr").first).to_contain_text("Undone")
    assert _titles(app) == {"Renamed"}
    shot("undone")

    # An entity export, watched live until its file is ready, then downloaded.
    page.select_option("#job-type", "students")
    page.select_option("#job-format", "csv")
    page.click("#job-btn")
    row = page.locator("#jobs-table tbody tr").first
    expect(row).to_contain_text("Ready")
    expect(page.locator("#status")).to_have_text("Students: the file is ready.")
    shot("job-done")
    with page.expect_download() as dl:
        row.get_by_role("button", name="Download").click()
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8-sig"))))
    # The page's language travels with the request: an English page's file has English labels.
    assert rows[0][:2] == ["Student ID", "First name"] and len(rows) > 1
    assert dl.value.suggested_filename == "students_all_en.csv"

    # Greek: every visible string switches.
    page.select_option("#lang", "el")
    el = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
    expect(page.locator("h1")).to_have_text(el["title"])
    expect(page.locator("#export-btn")).to_have_text(el["export"])
    expect(row).to_contain_text(el["EXPORT_JOB_STATUS_COMPLETED"])
    done = el["jobDone"].replace("{what}", el["students"])
    expect(page.locator("#status")).to_have_text(done)
    expect(page.locator("#import-result h3")).to_have_text(el["resultTitle"])
    assert el["title"] != "Ferry Export Center"
    shot("greek")
    page.set_viewport_size({"width": 800, "height": 1100})  # a tablet
    shot("tablet")
    assert not errors, errors
    context.close()
