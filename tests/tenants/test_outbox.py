"""The outbox serves every school (docs/tenants.md): a notification sent with one
school's token is delivered by a worker acting for that school, and another school's
token finds no such notification."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.auth import parse_role
from ferry.v1 import notify_pb2 as pb
from ferry.v1 import notify_pb2_grpc
from tests.conftest import make_settings, running
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def test_a_notification_is_delivered_for_its_school_and_hidden_from_others(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    t = tenancy
    app = App(
        make_settings(
            t.app_url,
            tmp_path,
            FERRY_NOTIFY_CHANNELS="[log]",
            FERRY_NOTIFY_POLL_SECONDS="0.05",
        )
    )
    try:
        with (
            running(app, ["notify"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            stub = notify_pb2_grpc.NotifyServiceStub(channel)

            def md(school: str) -> list[tuple[str, str]]:
                made = app.issuer().issue("t", parse_role("admin"), dt.timedelta(minutes=5),
                                          school=school)  # fmt: skip
                return [("authorization", f"Bearer {made.token}")]

            # The same event id in two schools: two notifications, one per school.
            sent = {}
            for code in ("south", "north"):
                req = pb.SendRequest(
                    channels=["log"],
                    recipients=["office@school.example"],
                    subject=f"For {code}",
                    body="Hello",
                    event_id="same-event",
                )
                made = stub.Send(req, metadata=md(code), timeout=10)
                assert made.created, code
                sent[code] = made.notification.id
            deadline = time.monotonic() + 20
            while True:
                got = {
                    code: stub.GetNotification(
                        pb.GetNotificationRequest(id=nid), metadata=md(code), timeout=10
                    ).notification
                    for code, nid in sent.items()
                }
                if all(n.status == pb.NOTIFICATION_STATUS_SENT for n in got.values()):
                    break
                assert time.monotonic() < deadline, got
                time.sleep(0.1)
            for code, other in (("north", "south"), ("south", "north"), ("north", "default")):
                with pytest.raises(grpc.RpcError) as e:
                    stub.GetNotification(
                        pb.GetNotificationRequest(id=sent[code]), metadata=md(other), timeout=10
                    )
                assert e.value.code() == grpc.StatusCode.NOT_FOUND, (code, other)
    finally:
        app.close()
    with t.platform.connect() as conn:  # the oracle: each school's own rows, all sent
        rows = conn.execute(
            sa.text(
                "SELECT n.school_id, n.subject, o.status, o.school_id FROM notifications n "
                "JOIN notify_outbox o ON o.notification_id = n.id ORDER BY n.school_id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (t.schools["north"], "For north", "sent", t.schools["north"]),
        (t.schools["south"], "For south", "sent", t.schools["south"]),
    ]
