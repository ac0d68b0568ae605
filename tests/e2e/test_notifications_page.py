"""The page's notification parts in a real browser (Chromium via Playwright) against a
real gateway, real services and a real aiosmtpd: "Email me when done" with an extra
recipient, the mail arriving, the admin list showing a refusal, and a retry from there."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ferry.app import App
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import running
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, STATIC, browser  # noqa: F401
from tests.gateway.conftest import seed_small
from tests.notify.helpers import SmtpServer, eventually, free_port

pytestmark = pytest.mark.browser
ADMIN = "head@school.example"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def site(
    make_app: Callable[..., App], empty_url: str, smtp: SmtpServer
) -> Iterator[tuple[str, App]]:
    seed_small(empty_url)
    port = free_port()
    app = make_app(
        empty_url,
        FERRY_SERVER_ADDRESS=f"127.0.0.1:{port}",
        FERRY_CLIENT_TARGET=f"127.0.0.1:{port}",
        FERRY_NOTIFY_CHANNELS="[smtp]",
        FERRY_NOTIFY_DEFAULT_CHANNELS="[smtp]",
        FERRY_NOTIFY_POLL_SECONDS="0.1",
        FERRY_NOTIFY_RETRY_SCHEDULE_SECONDS="[0.5]",
        FERRY_PLUGINS_CHANNELS_SMTP_PORT=str(smtp.port),
        FERRY_EXPORT_POLL_SECONDS="0.1",
    )
    create_user(app.engine, ADMIN, PASSWORD, "admin")
    # auth too: the page signs in through the auth service's Login.
    with running(app, ["export", "import", "notify", "auth"]) as server:
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        gport = gw.start()
        try:
            yield f"http://127.0.0.1:{gport}", app
        finally:
            gw.stop()


def test_email_me_when_done_and_retry_from_the_admin_list(
    browser: Any,  # noqa: F811
    site: tuple[str, App],
    smtp: SmtpServer,
    backend: str,
) -> None:
    from playwright.sync_api import expect

    base, _app = site
    ARTIFACTS.mkdir(exist_ok=True)
    smtp.inbox.rcpt_replies["office@school.example"] = "550 5.1.1 mailbox unavailable"
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20_000)
    page.goto(base + "/")
    page.fill("#username", ADMIN)
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#notify-panel")).to_be_visible()
    expect(page.locator("#notify-empty")).to_be_visible()

    # A bad extra address is refused on the page and nothing starts.
    page.select_option("#job-type", "students")
    page.check("#job-notify-me")
    page.fill("#job-notify", "not an address")
    page.click("#job-btn")
    expect(page.locator("#alert")).to_contain_text("is not a mail address")
    expect(page.locator("#jobs-empty")).to_be_visible()

    page.fill("#job-notify", "office@school.example")
    # Every text the status line shows: the job may finish (and say so) before a check of
    # the line itself could read the "started" message.
    page.evaluate("""() => { const el = document.getElementById('status'); window.statuses = [];
      new MutationObserver(() => window.statuses.push(el.textContent))
        .observe(el, {childList: true, characterData: true, subtree: true}); }""")
    page.click("#job-btn")
    started = f"Export started; {ADMIN}, office@school.example will get a mail when it is done."
    page.wait_for_function("(t) => window.statuses.includes(t)", arg=started)
    expect(page.locator("#jobs-table tbody tr").first).to_contain_text("Ready")
    (mail,) = smtp.inbox.wait_for(1)
    assert mail["To"] == ADMIN and mail["Subject"].startswith("Export ready: students (csv)")

    # The admin list shows the refusal; Retry sends it once the mailbox exists.
    def refused() -> bool:
        page.click("#notify-refresh")
        return "Failed" in (page.locator("#notify-table tbody tr").first.text_content() or "")

    # Bounded, but generous: on a loaded CI machine the refusal can take a while to be
    # claimed, sent and settled by the outbox workers.
    eventually(refused, 60, 0.5)
    row = page.locator("#notify-table tbody tr").first
    expect(row).to_contain_text("550 5.1.1 mailbox unavailable")
    page.screenshot(path=str(ARTIFACTS / f"notifications-{backend}-failed.png"), full_page=True)
    del smtp.inbox.rcpt_replies["office@school.example"]
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#status")).to_have_text("Sending it again.")

    def delivered() -> bool:
        page.click("#notify-refresh")
        return "Sent" in (page.locator("#notify-table tbody tr").first.text_content() or "")

    eventually(delivered, 60, 0.5)
    assert [m["To"] for m in smtp.inbox.wait_for(2)] == [ADMIN, "office@school.example"]

    # Greek.
    page.select_option("#lang", "el")
    el = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
    expect(page.locator("#notify-h")).to_have_text(el["notifications"])
    expect(page.locator("#notify-table tbody tr").first).to_contain_text(
        el["NOTIFICATION_STATUS_SENT"]
    )
    expect(page.locator("label[for=job-notify]")).to_have_text(el["notifyOthers"])
    page.screenshot(path=str(ARTIFACTS / f"notifications-{backend}-greek.png"), full_page=True)
    assert not errors, errors
    context.close()
