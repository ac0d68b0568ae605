"""NotifyService over a real server with the log channel: Send, idempotency by event id,
Get/List/Retry/ListChannels, and bad input that changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.notify_models import Notification, OutboxRow
from ferry.v1 import notify_pb2 as pb
from tests.notify.conftest import serving


def counts(app: App) -> tuple[int, int]:
    with app.engine.connect() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(Notification)).scalar_one()
        o = c.execute(sa.select(sa.func.count()).select_from(OutboxRow)).scalar_one()
    return int(n), int(o)


def test_send_is_delivered_and_readable(notify_app: Callable[..., App]) -> None:
    app = notify_app()
    with serving(app) as (_srv, c):
        r = c.send(
            channels=["log"],
            recipients=["a@school.example", "Μαρία <m@school.example>"],
            subject="Hello",
            body="Body text",
            event_id="evt-1",
        )
        assert r.created
        assert r.notification.status == pb.NOTIFICATION_STATUS_PENDING
        n = c.wait(r.notification.id)
        assert n.status == pb.NOTIFICATION_STATUS_SENT
        assert [d.recipient for d in n.deliveries] == [
            "a@school.example",
            "Μαρία <m@school.example>",
        ]
        assert all(
            d.status == pb.NOTIFICATION_STATUS_SENT and d.attempts == 1 for d in n.deliveries
        )
        assert n.subject == "Hello" and n.requested_by == "tester"
        listed = c.stub.ListNotifications(
            pb.ListNotificationsRequest(status=pb.NOTIFICATION_STATUS_SENT), metadata=c.md
        )
        assert [x.id for x in listed.notifications] == [n.id] and listed.total_size == 1
        chans = c.stub.ListChannels(pb.ListChannelsRequest(), metadata=c.md).channels
        assert [(x.name, x.healthy) for x in chans] == [("log", True)]


def test_same_event_id_is_one_notification(notify_app: Callable[..., App]) -> None:
    app = notify_app()
    with serving(app) as (_srv, c):
        first = c.send(
            recipients=["a@school.example"], subject="S", body="B", event_id="job-1:done"
        )
        again = c.send(
            recipients=["b@school.example"], subject="X", body="Y", event_id="job-1:done"
        )
        assert first.created and not again.created
        assert again.notification.id == first.notification.id
        assert list(again.notification.recipients) == ["a@school.example"]
        c.wait(first.notification.id)
    assert counts(app) == (1, 1)


def test_paging(notify_app: Callable[..., App]) -> None:
    app = notify_app(FERRY_NOTIFY_WORKERS="0")
    with serving(app) as (_srv, c):
        ids = [
            c.send(recipients=["a@school.example"], subject=f"n{i}", body="b").notification.id
            for i in range(5)
        ]
        seen: list[str] = []
        token = ""
        while True:
            page = c.stub.ListNotifications(
                pb.ListNotificationsRequest(page_size=2, page_token=token), metadata=c.md
            )
            seen += [n.id for n in page.notifications]
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 5
        assert page.total_size == 5


@pytest.mark.parametrize(
    ("request_kw", "code", "words"),
    [
        (
            {"channels": ["sms"], "recipients": ["a@b.example"], "subject": "s", "body": "b"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown channel 'sms' (channels[0]); configured: log",
        ),
        (
            {"recipients": ["not an address"], "subject": "s", "body": "b"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "recipients[0]",
        ),
        (
            {"recipients": [], "subject": "s", "body": "b"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "recipients is required",
        ),
        (
            {"recipients": ["a@b.example"], "template": "nope"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown template 'nope'; known: backup_done",
        ),
        (
            {
                "recipients": ["a@b.example"],
                "template": "export_failed",
                "variables": {"job_id": "1"},
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "'export_type' is undefined",
        ),
        (
            {"recipients": ["a@b.example"], "subject": "s"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "body is required",
        ),
        (
            {"recipients": ["a@b.example"], "subject": "s", "body": "b", "language": "fr"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown language 'fr'",
        ),
        (
            {"recipients": ["a@b.example"], "subject": "s", "body": "b", "event_id": "x" * 201},
            grpc.StatusCode.INVALID_ARGUMENT,
            "event_id is longer",
        ),
        (
            {"recipients": [f"u{i}@b.example" for i in range(51)], "subject": "s", "body": "b"},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "at most 50",
        ),
    ],
)
def test_bad_send_changes_nothing(
    notify_app: Callable[..., App], request_kw: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    app = notify_app()
    with serving(app) as (_srv, c):
        with pytest.raises(grpc.RpcError) as e:
            c.send(**request_kw)
        assert e.value.code() == code
        assert words in (e.value.details() or "")
    assert counts(app) == (0, 0)


def test_bulk_cap_and_results(notify_app: Callable[..., App]) -> None:
    app = notify_app(FERRY_NOTIFY_MAX_BULK_RECIPIENTS="3")
    with serving(app) as (_srv, c):
        with pytest.raises(grpc.RpcError) as e:
            c.stub.SendBulk(
                pb.SendBulkRequest(
                    recipients=[f"u{i}@b.example" for i in range(4)], subject="s", body="b"
                ),
                metadata=c.md,
            )
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as e:
            c.stub.SendBulk(
                pb.SendBulkRequest(recipients=["ok@b.example", "bad"], subject="s", body="b"),
                metadata=c.md,
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "recipients[1]" in (e.value.details() or "")
        assert counts(app) == (0, 0)
        r = c.stub.SendBulk(
            pb.SendBulkRequest(
                recipients=["a@b.example", "b@b.example"], subject="s", body="b", event_id="bulk-1"
            ),
            metadata=c.md,
        )
        assert [x.recipient for x in r.results] == ["a@b.example", "b@b.example"]
        assert [x.notification.event_id for x in r.results] == [
            "bulk-1:a@b.example",
            "bulk-1:b@b.example",
        ]
        for x in r.results:
            assert c.wait(x.notification.id).status == pb.NOTIFICATION_STATUS_SENT


def test_get_and_retry_errors(notify_app: Callable[..., App]) -> None:
    app = notify_app()
    with serving(app) as (_srv, c):
        with pytest.raises(grpc.RpcError) as e:
            c.get("no-such-id")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            c.stub.ListNotifications(pb.ListNotificationsRequest(page_token="%%"), metadata=c.md)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        n = c.send(recipients=["a@b.example"], subject="s", body="b").notification
        c.wait(n.id)
        with pytest.raises(grpc.RpcError) as e:
            c.stub.RetryNotification(pb.RetryNotificationRequest(id=n.id), metadata=c.md)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        from tests.conftest import auth

        with pytest.raises(grpc.RpcError) as e:
            c.stub.RetryNotification(
                pb.RetryNotificationRequest(id=n.id), metadata=auth(app, "operator")
            )
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
