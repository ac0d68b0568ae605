"""`ferry notify send|list|show|retry|channels` against a real server and a real aiosmtpd."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from tests.conftest import running
from tests.integration.test_cli import env_for
from tests.notify.helpers import SmtpServer, eventually


def invoke(app: App, port: int, smtp_port: int, *args: str) -> Any:
    env = env_for(
        app,
        port,
        FERRY_NOTIFY_CHANNELS="[log, smtp]",
        FERRY_PLUGINS_CHANNELS_SMTP_PORT=str(smtp_port),
    )
    return CliRunner().invoke(cli, list(args), env=env)


def test_send_list_show_retry_channels(notify_app: Callable[..., App], smtp: SmtpServer) -> None:
    smtp.inbox.rcpt_replies["x@school.example"] = "550 5.1.1 no such user"
    app = notify_app(smtp_port=smtp.port)
    with running(app, ["notify"]) as srv:

        def run(*args: str) -> Any:
            r = invoke(app, srv.port, smtp.port, *args)
            return r

        r = run(
            "notify",
            "send",
            "--channel",
            "smtp",
            "--to",
            "x@school.example",
            "--subject",
            "Καλημέρα",
            "--body",
            "Hello",
            "--event-id",
            "cli-1",
        )
        assert r.exit_code == 0, r.output
        nid = r.stdout.strip().splitlines()[-1]

        def shown() -> dict[str, Any] | None:
            s = run("notify", "show", nid)
            doc: dict[str, Any] = json.loads(s.stdout)
            return doc if doc["status"] != "NOTIFICATION_STATUS_PENDING" else None

        doc = eventually(shown)
        assert doc["status"] == "NOTIFICATION_STATUS_FAILED"
        assert doc["deliveries"][0]["lastError"] == "recipient refused: 550 5.1.1 no such user"
        listed = run("notify", "list", "--status", "failed")
        assert listed.exit_code == 0 and nid in listed.stdout and "1 of 1" in listed.output
        del smtp.inbox.rcpt_replies["x@school.example"]
        again = run("notify", "retry", nid)
        assert again.exit_code == 0, again.output
        eventually(lambda: len(smtp.inbox.messages) == 1)
        assert smtp.inbox.messages[0]["Subject"] == "Καλημέρα"
        chans = run("notify", "channels")
        assert chans.exit_code == 0
        assert [line.split()[:3] for line in chans.stdout.splitlines()[2:]] == [
            ["log", "log", "yes"],
            ["smtp", "smtp", "yes"],
        ]
        bad = run(
            "notify",
            "send",
            "--channel",
            "sms",
            "--to",
            "a@b.example",
            "--subject",
            "s",
            "--body",
            "b",
        )
        assert bad.exit_code == 2 and "unknown channel 'sms'" in bad.output
        missing = run("notify", "show", "nope")
        assert missing.exit_code == 3
