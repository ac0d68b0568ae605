"""Events belong to their makers (issue 23, item 2): the event ids of Ferry's own
announcements (export:, import:, backup:, schedule:) are refused from Send callers, and a
caller's event id is scoped to that caller, so nobody can take a job's announcement and
two callers never collide."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.notify_models import Notification
from ferry.v1 import export_pb2 as epb
from ferry.v1 import export_pb2_grpc, notify_pb2_grpc
from ferry.v1 import notify_pb2 as pb
from tests.conftest import auth, running, token
from tests.notify.conftest import serving
from tests.notify.helpers import SmtpServer
from tests.notify.test_export_mail import export_app, seeded, wait_job  # noqa: F401 (fixtures)
from tests.notify.test_send import counts


def _md(app: App, subject: str, role: str = "operator") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token(app, role, subject)}")]


def test_reserved_event_ids_are_refused_from_callers(notify_app: Callable[..., App]) -> None:
    app = notify_app()
    with serving(app) as (_srv, c):
        for event_id in ("export:j1:completed", "import:42", "backup:nightly", "schedule:x:y"):
            for call in (
                lambda e=event_id: c.stub.Send(pb.SendRequest(
                    recipients=["a@school.example"], subject="s", body="b", event_id=e),
                    metadata=_md(app, "mallory"), timeout=10),
                lambda e=event_id: c.stub.SendBulk(pb.SendBulkRequest(
                    recipients=["a@school.example"], subject="s", body="b", event_id=e),
                    metadata=_md(app, "mallory", "admin"), timeout=10),
            ):  # fmt: skip
                with pytest.raises(grpc.RpcError) as e:
                    call()
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
                assert "reserved" in e.value.details() and "event_id" in e.value.details()  # type: ignore[attr-defined]
    assert counts(app) == (0, 0)


def test_two_callers_never_collide_on_an_event_id(notify_app: Callable[..., App]) -> None:
    app = notify_app()
    with serving(app) as (_srv, c):

        def send(who: str, to: str) -> pb.SendResponse:
            req = pb.SendRequest(recipients=[to], subject=who, body="b", event_id="weekly")
            return c.stub.Send(req, metadata=_md(app, who), timeout=10)

        alice, bob = send("alice", "a@school.example"), send("bob", "b@school.example")
        assert alice.created and bob.created
        assert alice.notification.id != bob.notification.id
        assert list(bob.notification.recipients) == ["b@school.example"]
        # Each caller sees its own id as it gave it, and a repeat is still one notification.
        assert alice.notification.event_id == bob.notification.event_id == "weekly"
        again = send("alice", "x@school.example")
        assert not again.created and again.notification.id == alice.notification.id
        for r in (alice, bob):
            c.wait(r.notification.id)
    with app.engine.connect() as conn:
        stored = conn.execute(sa.select(Notification.event_id)).scalars().all()
    assert len(set(stored)) == 2 and all(s.endswith("/weekly") for s in stored)


def test_an_export_announcement_cannot_be_hijacked(export_app: App, smtp: SmtpServer) -> None:  # noqa: F811
    """Right after an operator starts a job that notifies the victim, another caller
    allowed to Send tries the job's event id with their own text and address: refused,
    and the victim gets the job's real mail, the attacker nothing."""
    app = export_app
    with (
        running(app, ["export", "notify"]) as srv,
        grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
    ):
        export = export_pb2_grpc.ExportServiceStub(ch)
        notify = notify_pb2_grpc.NotifyServiceStub(ch)
        md = auth(app, "operator")
        job = export.StartExport(epb.StartExportRequest(
            export_type="students", format="csv", notify=["victim@school.example"]),
            metadata=md, timeout=10).job  # fmt: skip
        forged = pb.SendRequest(recipients=["attacker@evil.example"], subject="Export ready",
                                body="download it at https://evil.example",
                                event_id=f"export:{job.id}:completed")  # fmt: skip
        with pytest.raises(grpc.RpcError) as e:
            notify.Send(forged, metadata=_md(app, "mallory"), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        done = wait_job(export, md, job.id)
        assert done.status == epb.EXPORT_JOB_STATUS_COMPLETED
        (mail,) = smtp.inbox.wait_for(1)
        assert mail["To"] == "victim@school.example"
        assert "evil.example" not in mail.get_body(("plain",)).get_content()
        with app.engine.connect() as conn:
            n = conn.execute(sa.select(Notification.event_id, Notification.requested_by).where(
                Notification.id == done.notification_id)).one()  # fmt: skip
        assert tuple(n) == (f"export:{job.id}:completed", "service:export")
