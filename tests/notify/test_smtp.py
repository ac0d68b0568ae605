"""The smtp channel against a real aiosmtpd server in the test process."""

from __future__ import annotations

import time
from collections.abc import Callable

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
    assert mail["Subject"] == "Η εξαγωγή είναι έτοιμη: students (csv), 1.234 εγγραφές"  # noqa: RUF001 (Greek)
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
    app = notify_app(smtp_port=smtp.port, FERRY_NOTIFY_WORKERS="1")
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
