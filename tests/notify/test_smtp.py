"""The smtp channel against a real aiosmtpd server in the test process."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.app import App
from ferry.v1 import notify_pb2 as pb
from tests.notify.conftest import serving
from tests.notify.helpers import SmtpServer, eventually, free_port

EXPORT_VARS = {
    "export_type": "students",
    "format": "csv",
    "records": 1234,
    "size_bytes": 56789,
    "duration_seconds": 2.5,
    "filename": "students.csv",
    "download_url": "http://gw.example/api/v1/exports/j1/download?exp=1&sig=ab",
    "link_expires_at": "2026-12-08T10:00:00+00:00",
}


def test_mail_has_headers_both_parts_and_a_stable_message_id(
    notify_app: Callable[..., App], smtp: SmtpServer
) -> None:
    app = notify_app(smtp_port=smtp.port)
    with serving(app) as (_srv, c):
        n = c.send(
            channels=["smtp"],
            recipients=["Γιώργος Παπαδόπουλος <giorgos@school.example>"],
            template="export_completed",
            variables=EXPORT_VARS,
            language="el",
            event_id="job-1:completed",
        ).notification
        done = c.wait(n.id)
    assert done.status == pb.NOTIFICATION_STATUS_SENT
    (mail,) = smtp.inbox.wait_for(1)
    assert mail["Subject"] == "Η εξαγωγή είναι έτοιμη: Μαθητές (csv), 1.234 εγγραφές"  # noqa: RUF001 (Greek)
    assert mail["To"].addresses[0].display_name == "Γιώργος Παπαδόπουλος"
    assert mail["To"].addresses[0].addr_spec == "giorgos@school.example"
    assert mail["From"].addresses[0].addr_spec == "ferry@school.example"
    row_id = done.deliveries[0].message_id
    assert mail["Message-ID"] == f"<{row_id}@school.example>"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert EXPORT_VARS["download_url"] in text.get_content()
    assert (
        'href="http://gw.example/api/v1/exports/j1/download?exp=1&amp;sig=ab"' in html.get_content()
    )
    assert "Εγγραφές: 1.234" in text.get_content()
    assert smtp.inbox.envelopes == [("ferry@school.example", ["giorgos@school.example"])]
    raw = smtp.inbox.raw[0]
    assert raw.isascii()  # Greek travels RFC 2047 / transfer-encoded, never as raw bytes
    assert raw.startswith(b"Subject: =?utf-8?") or b"\r\nSubject: =?utf-8?" in raw


def test_html_is_escaped_and_text_is_not(notify_app: Callable[..., App], smtp: SmtpServer) -> None:
    app = notify_app(smtp_port=smtp.port)
    with serving(app) as (_srv, c):
        c.wait(
            c.send(
                channels=["smtp"],
                recipients=["a@school.example"],
                subject="Fish & <chips>",
                body="<script>x</script> & more",
            ).notification.id
        )
    (mail,) = smtp.inbox.wait_for(1)
    assert "<script>" not in mail.get_body(("html",)).get_content()
    assert "&lt;script&gt;x&lt;/script&gt; &amp; more" in mail.get_body(("html",)).get_content()
    assert mail.get_body(("plain",)).get_content().strip() == "<script>x</script> & more"
    assert mail["Subject"] == "Fish & <chips>"


def test_nothing_listening_then_it_starts(notify_app: Callable[..., App]) -> None:
    port = free_port()
    app = notify_app(smtp_port=port)
    with serving(app) as (_srv, c):
        n = c.send(channels=["smtp"], recipients=["a@school.example"], subject="s", body="b")
        nid = n.notification.id

        def tried() -> pb.Notification | None:
            x = c.get(nid)
            return x if x.deliveries[0].attempts >= 1 and x.deliveries[0].last_error else None

        pending = eventually(tried)
        assert pending.status == pb.NOTIFICATION_STATUS_PENDING
        assert "cannot reach the mail relay" in pending.deliveries[0].last_error
        server = SmtpServer(port).start()
        try:
            done = c.wait(nid)
            assert done.status == pb.NOTIFICATION_STATUS_SENT
            time.sleep(0.5)
            assert len(server.inbox.messages) == 1
        finally:
            server.stop()


def test_451_then_250_is_one_mail_with_one_message_id(
    notify_app: Callable[..., App], smtp: SmtpServer
) -> None:
    smtp.inbox.data_replies.append("451 4.3.0 try again later")
    app = notify_app(smtp_port=smtp.port)
    with serving(app) as (_srv, c):
        nid = c.send(channels=["smtp"], recipients=["a@school.example"], subject="s", body="b")
        done = c.wait(nid.notification.id)
        time.sleep(0.5)
    assert done.status == pb.NOTIFICATION_STATUS_SENT
    assert done.deliveries[0].attempts == 2
    assert len(smtp.inbox.messages) == 1
    assert (
        smtp.inbox.messages[0]["Message-ID"] == f"<{done.deliveries[0].message_id}@school.example>"
    )


def test_550_fails_and_is_not_retried(notify_app: Callable[..., App], smtp: SmtpServer) -> None:
    smtp.inbox.data_replies.extend(["550 5.7.1 rejected by policy"] * 5)
    app = notify_app(smtp_port=smtp.port)
    with serving(app) as (_srv, c):
        nid = c.send(channels=["smtp"], recipients=["a@school.example"], subject="s", body="b")
        done = c.wait(nid.notification.id)
        time.sleep(1.0)  # three retry delays: nothing more may happen
        again = c.get(done.id)
    assert done.status == pb.NOTIFICATION_STATUS_FAILED
    assert again.deliveries[0].attempts == 1
    assert again.deliveries[0].last_error == "message refused: 550 5.7.1 rejected by policy"
    assert len(smtp.inbox.data_replies) == 4 and smtp.inbox.messages == []


def test_one_of_two_recipients_refused(notify_app: Callable[..., App], smtp: SmtpServer) -> None:
    smtp.inbox.rcpt_replies["gone@school.example"] = "550 5.1.1 no such user"
    app = notify_app(smtp_port=smtp.port)
    with serving(app) as (_srv, c):
        nid = c.send(
            channels=["smtp"],
            recipients=["ok@school.example", "gone@school.example"],
            subject="s",
            body="b",
        ).notification.id
        done = c.wait(nid)
        by = {d.recipient: d for d in done.deliveries}
        assert by["ok@school.example"].status == pb.NOTIFICATION_STATUS_SENT
        assert by["gone@school.example"].status == pb.NOTIFICATION_STATUS_FAILED
        assert by["gone@school.example"].last_error == "recipient refused: 550 5.1.1 no such user"
        assert done.status == pb.NOTIFICATION_STATUS_FAILED
        assert [e[1] for e in smtp.inbox.envelopes] == [["ok@school.example"]]
        # The user exists now: an admin's retry sends to that recipient only.
        del smtp.inbox.rcpt_replies["gone@school.example"]
        c.stub.RetryNotification(pb.RetryNotificationRequest(id=nid), metadata=c.md)
        assert c.wait(nid).status == pb.NOTIFICATION_STATUS_SENT
    smtp.inbox.wait_for(2)
    assert [e[1] for e in smtp.inbox.envelopes] == [["ok@school.example"], ["gone@school.example"]]


def test_connection_is_reused(notify_app: Callable[..., App], smtp: SmtpServer) -> None:
    # One send at a time: one connection (several senders: see test_notify_concurrency).
    app = notify_app(
        smtp_port=smtp.port, FERRY_NOTIFY_WORKERS="1", FERRY_NOTIFY_SENDS_PER_WORKER="1"
    )
    with serving(app) as (_srv, c):
        ids = [
            c.send(
                channels=["smtp"], recipients=[f"u{i}@school.example"], subject="s", body="b"
            ).notification.id
            for i in range(10)
        ]
        for nid in ids:
            c.wait(nid)
    assert len(smtp.inbox.messages) == 10
    assert smtp.inbox.connections == 1


def test_auth_password_from_a_file_never_shows(
    notify_app: Callable[..., App], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Πάσσγουορντ"
    server = SmtpServer(password=secret).start()
    (tmp_path / "smtp-password").write_text(secret + "\n", encoding="utf-8")
    try:
        app = notify_app(
            smtp_port=server.port,
            FERRY_PLUGINS_CHANNELS_SMTP_USERNAME="ferry",
            FERRY_PLUGINS_CHANNELS_SMTP_PASSWORD_FILE=str(tmp_path / "smtp-password"),
        )
        with serving(app) as (_srv, c):
            n = c.send(channels=["smtp"], recipients=["a@school.example"], subject="s", body="b")
            assert c.wait(n.notification.id).status == pb.NOTIFICATION_STATUS_SENT
        assert server.logins == [("ferry", True)]
        # A wrong password: retried, and neither password nor server text is recorded.
        (tmp_path / "smtp-password").write_text("wrong-" + secret, encoding="utf-8")
        app2 = notify_app(
            smtp_port=server.port,
            FERRY_PLUGINS_CHANNELS_SMTP_USERNAME="ferry",
            FERRY_PLUGINS_CHANNELS_SMTP_PASSWORD_FILE=str(tmp_path / "smtp-password"),
        )
        with serving(app2) as (_srv, c):
            nid = c.send(
                channels=["smtp"], recipients=["b@school.example"], subject="s", body="b"
            ).notification.id
            pending = eventually(lambda: (x := c.get(nid)).deliveries[0].last_error and x)
            chans = {
                x.name: x
                for x in c.stub.ListChannels(pb.ListChannelsRequest(), metadata=c.md).channels
            }
        error = pending.deliveries[0].last_error
        assert error == "cannot reach the mail relay: authentication failed (535)"
        assert not chans["smtp"].healthy and "authentication failed" in chans["smtp"].detail
        assert secret not in caplog.text and secret not in chans["smtp"].detail
    finally:
        server.stop()


def test_unreachable_relay_is_unhealthy(notify_app: Callable[..., App]) -> None:
    app = notify_app(smtp_port=free_port())
    with serving(app) as (_srv, c):
        chans = {
            x.name: x for x in c.stub.ListChannels(pb.ListChannelsRequest(), metadata=c.md).channels
        }
    assert not chans["smtp"].healthy
    assert chans["smtp"].detail.endswith("connection refused")


def test_metrics_count_by_channel(notify_app: Callable[..., App], smtp: SmtpServer) -> None:
    from prometheus_client import REGISTRY

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"channel": "smtp"}) or 0.0

    before = (
        value("ferry_notify_sent_total"),
        value("ferry_notify_retried_total"),
        value("ferry_notify_failed_total"),
    )
    smtp.inbox.data_replies.extend(["451 later", "550 no"])
    app = notify_app(smtp_port=smtp.port, FERRY_NOTIFY_WORKERS="1")
    with serving(app) as (_srv, c):
        a = c.send(channels=["smtp"], recipients=["a@school.example"], subject="s", body="b")
        c.wait(a.notification.id)
    after = (
        value("ferry_notify_sent_total"),
        value("ferry_notify_retried_total"),
        value("ferry_notify_failed_total"),
    )
    # 451 then 550: one retry, then a failure; nothing sent.
    assert [y - x for x, y in zip(before, after, strict=True)] == [0, 1, 1]
    assert (
        REGISTRY.get_sample_value("ferry_notify_delivery_seconds_count", {"channel": "smtp"})
        is not None
    )
