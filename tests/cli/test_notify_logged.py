"""`ferry notify list` never calls a notice that only went to the log channel "sent":
nothing was mailed, and the list says "logged (no mail channel)"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from tests.conftest import running
from tests.integration.test_cli import env_for
from tests.notify.helpers import eventually


def test_a_log_only_notice_is_listed_as_logged_not_sent(
    make_app: Callable[..., App], empty_url: str
) -> None:
    app = make_app(empty_url, FERRY_NOTIFY_POLL_SECONDS="0.1")
    assert app.settings.notify.channels == ["log"]  # the default, as `make run` has it
    with running(app, ["notify"]) as srv:
        env = env_for(app, srv.port)

        def run(*args: str) -> Any:
            r = CliRunner().invoke(cli, list(args), env=env)
            assert r.exit_code == 0, r.output
            return r

        sent = run("notify", "send", "--channel", "log", "--to", "head@school.example",
                   "--subject", "Ready", "--body", "b")  # fmt: skip
        nid = sent.stdout.strip().splitlines()[-1]
        # The outbox settled the row (plain SQL, not the CLI under test).
        import sqlalchemy as sa

        def settled() -> bool:
            with app.engine.connect() as conn:
                q = sa.text("SELECT status FROM notifications WHERE id = :id")
                return conn.execute(q, {"id": nid}).scalar() not in (None, "pending")

        eventually(settled, 30, 0.2)
        row = next(line for line in run("notify", "list").stdout.splitlines() if nid in line)
        assert "logged (no mail channel)" in row
        assert " sent " not in f" {row} "
