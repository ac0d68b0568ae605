"""A user's mail address (users.email, migration 0009): where the page's "Email me when
done" sends. Set with `ferry user add --email` or `ferry user email`, checked as a bare
address, listed, and returned by Login (so the page knows it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry import users
from ferry.app import App
from ferry.cli.main import cli
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.errors import InvalidArgument
from ferry.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import fresh_database, running
from tests.e2e.test_export_center import PASSWORD, browser  # noqa: F401
from tests.e2e.test_notifications_page import site  # noqa: F401
from tests.integration.test_cli import env_for
from tests.notify.helpers import SmtpServer


@pytest.mark.parametrize(
    "bad",
    ["not an address", "Anna <anna@school.example>", "anna@", "άννα@school.example", "a\n@b.c"],
)
def test_only_a_bare_address_is_taken(empty_url: str, bad: str) -> None:
    engine = make_engine(empty_url)
    try:
        with pytest.raises(InvalidArgument) as e:
            users.create_user(engine, "anna", "long enough pw", "viewer", bad)
        assert e.value.field == "email"
        assert not users.user_exists(engine, "anna")
        made = users.create_user(
            engine, "anna", "long enough pw", "viewer", " anna@school.example "
        )
        assert made.email == "anna@school.example"
        assert users.email_of(engine, "anna") == "anna@school.example"
        with pytest.raises(InvalidArgument):
            users.set_email(engine, "anna", bad)
        assert users.set_email(engine, "anna", "").email == ""
        assert users.email_of(engine, "anna") == "" and users.email_of(engine, "nobody") == ""
    finally:
        engine.dispose()


def test_users_from_before_0009_have_no_address(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine, "0008")
            with engine.begin() as c:
                c.execute(
                    sa.text(
                        "INSERT INTO users (username, password_hash, password_salt, scrypt_n,"
                        " scrypt_r, scrypt_p, role, disabled, created_at) VALUES ('old', x'00',"
                        " x'00', 1, 1, 1, 'admin', 0, '2026-01-01 00:00:00')"
                    )
                )
            migrate.upgrade(engine)
            assert users.email_of(engine, "old") == ""
            assert [u.email for u in users.list_users(engine)] == [""]
        finally:
            engine.dispose()


def test_cli_add_list_set_and_login_returns_it(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(empty_url)
    with running(app, ["auth"]) as srv:
        env = env_for(app, srv.port)
        run = CliRunner().invoke

        bad = run(cli, ["user", "add", "anna", "--email", "anna at school"], env=env)
        assert bad.exit_code != 0 and "--email" in bad.output and "not a mail address" in bad.output
        made = run(
            cli,
            ["user", "add", "anna", "--email", "anna@school.example", "--password-stdin"],
            input="anna's password\n",
            env=env,
        )
        assert made.exit_code == 0, made.output
        assert "created user anna (viewer, anna@school.example)" in made.output
        plain = run(
            cli, ["user", "add", "kostas", "--password-stdin"], input="kostas pw 1\n", env=env
        )
        assert plain.exit_code == 0, plain.output

        listed = run(cli, ["user", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        rows = {line.split()[0]: line.split() for line in listed.output.splitlines()[1:] if line}
        assert rows["anna"][2] == "anna@school.example" and rows["kostas"][2] == "-"

        changed = run(cli, ["user", "email", "kostas", "kostas@school.example"], env=env)
        assert changed.exit_code == 0 and "kostas@school.example" in changed.output
        refused = run(cli, ["user", "email", "kostas", "Kostas <k@school.example>"], env=env)
        assert refused.exit_code != 0 and "bare mail address" in refused.output

        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            got = stub.Login(auth_pb2.LoginRequest(username="anna", password="anna's password"))
            assert got.email == "anna@school.example"
            got = stub.Login(auth_pb2.LoginRequest(username="kostas", password="kostas pw 1"))
            assert got.email == "kostas@school.example"
        cleared = run(cli, ["user", "email", "kostas"], env=env)
        assert cleared.exit_code == 0 and "none" in cleared.output
        assert users.email_of(app.engine, "kostas") == ""


@pytest.mark.browser
def test_email_me_on_the_page_sends_to_the_users_address(
    browser: Any,  # noqa: F811
    site: tuple[str, App],  # noqa: F811
    smtp: SmtpServer,
) -> None:
    """A sign-in name that is no address: "Email me when done" uses users.email; a user
    without one is asked to add an address and nothing starts."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    base, app = site
    users.create_user(app.engine, "maria", PASSWORD, "operator", "maria@school.example")
    users.create_user(app.engine, "nikos", PASSWORD, "operator")
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(20_000)

    def tick(selector: str) -> None:
        """page.check, again if the page moved under the click (a layout shift while the
        signed-in page fills in: "Clicking the checkbox did not change its state")."""
        for attempt in range(3):
            try:
                page.check(selector)
                return
            except PlaywrightError as e:
                if "did not change its state" not in str(e) or attempt == 2:
                    raise
                page.wait_for_timeout(200)

    def sign_in(name: str) -> None:
        page.goto(base + "/")
        page.fill("#username", name)
        page.fill("#password", PASSWORD)
        page.click("#login-btn")
        expect(page.locator("#job-btn")).to_be_visible()

    sign_in("nikos")
    page.select_option("#job-type", "students")
    tick("#job-notify-me")
    expect(page.locator("#job-notify-me-hint")).to_be_visible()
    page.click("#job-btn")
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.click("#signout")

    sign_in("maria")
    page.select_option("#job-type", "students")
    tick("#job-notify-me")
    expect(page.locator("#job-notify-me-hint")).to_be_hidden()
    page.click("#job-btn")
    expect(page.locator("#status")).to_have_text(
        "Export started; maria@school.example will get a mail when it is done."
    )
    (mail,) = smtp.inbox.wait_for(1, timeout=60)
    assert mail["To"] == "maria@school.example"
    context.close()
