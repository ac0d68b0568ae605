"""NotifyService: the gRPC face of ferry.notify, and the outbox workers it owns.

Translation only: requests become ferry.notify calls, outbox views become Notification
messages. `start` opens the configured channels (a bad channel setting stops start-up
naming its key) and starts the workers; `stop` stops them.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from ferry.app import App
from ferry.db.notify_models import PENDING
from ferry.notify import store
from ferry.notify.core import Notify, SendInput, event_scope
from ferry.notify.worker import Workers
from ferry.rpc import statuses
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import caller
from ferry.v1 import notify_pb2 as pb
from ferry.v1 import notify_pb2_grpc

# The stored names <-> the proto enum (ferry.rpc.statuses).
STATUS = statuses.NOTIFICATION_STATUS_VALUE
STATUS_NAME = statuses.NOTIFICATION_STATUS


class NotifyService(notify_pb2_grpc.NotifyServiceServicer):
    full_name = pb.DESCRIPTOR.services_by_name["NotifyService"].full_name

    def __init__(self, app: App) -> None:
        self.app = app
        self.workers: Workers | None = None
        self.notify = Notify(app, on_queued=self._wake)

    def register(self, server: grpc.Server) -> None:
        notify_pb2_grpc.add_NotifyServiceServicer_to_server(self, server)

    def start(self) -> None:
        """Open the configured channels and start the outbox workers."""
        self.notify.channels  # noqa: B018 - builds and checks every channel now
        self.workers = Workers(self.app, self.notify)
        self.workers.start()

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.stop(self.app.settings.server.shutdown.grace_seconds)
            self.workers = None

    def _wake(self) -> None:
        if self.workers is not None:
            self.workers.wake()

    @handles_errors
    def Send(self, request: pb.SendRequest, context: grpc.ServicerContext) -> pb.SendResponse:
        view, created = self.notify.send(send_input(request), caller())
        return pb.SendResponse(notification=notification_message(view), created=created)

    @handles_errors
    def SendBulk(
        self, request: pb.SendBulkRequest, context: grpc.ServicerContext
    ) -> pb.SendBulkResponse:
        done = self.notify.send_bulk(send_input(request), caller())
        return pb.SendBulkResponse(
            results=[
                pb.BulkResult(recipient=r, notification=notification_message(v), created=c)
                for r, v, c in done
            ]
        )

    @handles_errors
    def GetNotification(
        self, request: pb.GetNotificationRequest, context: grpc.ServicerContext
    ) -> pb.GetNotificationResponse:
        view = store.get(self.app.engine, request.id)
        return pb.GetNotificationResponse(notification=notification_message(view))

    @handles_errors
    def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> pb.ListNotificationsResponse:
        page = store.list_page(
            self.app.engine,
            request.page_size,
            request.page_token,
            STATUS_NAME.get(request.status, ""),
        )
        return pb.ListNotificationsResponse(
            notifications=[notification_message(v) for v in page.items],
            next_page_token=page.next_token,
            total_size=page.total,
        )

    @handles_errors
    def RetryNotification(
        self, request: pb.RetryNotificationRequest, context: grpc.ServicerContext
    ) -> pb.RetryNotificationResponse:
        view = store.retry(self.app.engine, request.id)
        self._wake()
        return pb.RetryNotificationResponse(notification=notification_message(view))

    @handles_errors
    def ListChannels(
        self, request: pb.ListChannelsRequest, context: grpc.ServicerContext
    ) -> pb.ListChannelsResponse:
        return pb.ListChannelsResponse(
            channels=[
                pb.Channel(
                    name=c.name,
                    kind=c.kind,
                    healthy=c.health.healthy,
                    detail=c.health.detail,
                    pending=c.pending,
                )
                for c in self.notify.channel_infos()
            ]
        )



def send_input(request: pb.SendRequest | pb.SendBulkRequest) -> SendInput:
    variables: dict[str, Any] = (
        json_format.MessageToDict(request.variables) if request.HasField("variables") else {}
    )
    return SendInput(
        channels=list(request.channels),
        recipients=list(request.recipients),
        template=request.template,
        variables=variables,
        subject=request.subject,
        body=request.body,
        language=request.language,
        event_id=request.event_id,
    )


def notification_message(view: store.View, scope: str | None = None) -> pb.Notification:
    """The Notification message of `view`; the caller's own event ids without the scope
    they are kept under (`scope`, default: the current caller's)."""
    n = view.notification
    scope = event_scope(caller()) if scope is None else scope
    event_id = n.event_id[len(scope) :] if scope and n.event_id.startswith(scope) else n.event_id
    # Another caller's scope stays visible: it is not this caller's event id.
    msg = pb.Notification(
        id=n.id,
        event_id=event_id,
        status=STATUS.get(n.status, pb.NOTIFICATION_STATUS_UNSPECIFIED),
        channels=list(n.channels or []),
        recipients=list(n.recipients or []),
        template=n.template,
        language=n.language,
        subject=n.subject,
        attempts=view.attempts,
        last_error=view.last_error,
        requested_by=n.requested_by,
    )
    for name in ("created_at", "updated_at"):
        value = store.aware(getattr(n, name))
        if value is not None:
            getattr(msg, name).FromDatetime(value)
    for r in view.rows:
        d = msg.deliveries.add(
            channel=r.channel,
            recipient=r.recipient,
            status=STATUS.get(r.status, pb.NOTIFICATION_STATUS_UNSPECIFIED),
            attempts=r.attempts,
            last_error=r.last_error,
            message_id=f"{n.id}.{r.id}",
        )
        if r.status == PENDING:
            when = store.aware(r.next_attempt_at)
            if when is not None:
                d.next_attempt_at.FromDatetime(when)
        sent_at = store.aware(r.sent_at)
        if sent_at is not None:
            d.sent_at.FromDatetime(sent_at)
    return msg
