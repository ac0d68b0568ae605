"""`ferry notify …`: send, list, show and retry notifications, and list the channels —
a gRPC client of NotifyService like every other verb."""

from __future__ import annotations

import json
from typing import Any

import click
from google.protobuf import json_format

from ferry.cli.common import clients, load_app, rpc_errors, school_option, table
from ferry.rpc import statuses
from ferry.v1 import notify_pb2 as pb
from ferry.v1 import notify_pb2_grpc

STATUS = statuses.NOTIFICATION_STATUS
BY_NAME = statuses.NOTIFICATION_STATUS_VALUE


@click.group()
def notify() -> None:
    """Notifications (mail, webhooks) and their outbox."""


def _stub(ctx: click.Context) -> notify_pb2_grpc.NotifyServiceStub:
    return clients(load_app(ctx)).notify()


@notify.command("send")
@click.option("--channel", "channels", multiple=True, help="A configured channel (repeatable).")
@click.option("--to", "recipients", multiple=True, help="A recipient (repeatable).")
@click.option("--subject", default="", help="Subject (when no --template).")
@click.option("--body", default="", help="Plain text body (when no --template).")
@click.option("--template", default="", help="export_completed, export_failed, import_finished, …")
@click.option("--var", "variables", multiple=True, metavar="KEY=JSON", help="A template variable.")
@click.option("--language", default="", help="en | el.")
@click.option("--event-id", default="", help="The same event id is the same notification.")
@school_option
@click.pass_context
def notify_send(
    ctx: click.Context,
    channels: tuple[str, ...],
    recipients: tuple[str, ...],
    subject: str,
    body: str,
    template: str,
    variables: tuple[str, ...],
    language: str,
    event_id: str,
) -> None:
    """Queue a notification; prints its id (delivery happens from the outbox)."""
    req = pb.SendRequest(
        channels=list(channels),
        recipients=list(recipients),
        subject=subject,
        body=body,
        template=template,
        language=language,
        event_id=event_id,
    )
    if variables:
        req.variables.update(dict(_var(v) for v in variables))
    with rpc_errors():
        resp = _stub(ctx).Send(req)
    n = resp.notification
    click.echo(f"notification {n.id} {'queued' if resp.created else 'exists'}", err=True)
    click.echo(n.id)


def _var(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--var")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value  # plain text


LOGGED = "logged (no mail channel)"


def shown_status(n: pb.Notification) -> str:
    """A notification's status in words. Delivered only through the log channel is
    "logged (no mail channel)": nothing was sent, whatever the outbox row says."""
    name = STATUS.get(n.status, "?")
    if n.status == pb.NOTIFICATION_STATUS_SENT and n.channels and set(n.channels) == {"log"}:
        return LOGGED
    return name


@notify.command("list")
@click.option("--status", type=click.Choice(sorted(BY_NAME)), default=None)
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@school_option
@click.pass_context
def notify_list(ctx: click.Context, status: str | None, limit: int) -> None:
    """Notifications, newest first."""
    req = pb.ListNotificationsRequest(page_size=limit)
    if status:
        req.status = BY_NAME[status]
    with rpc_errors():
        page = _stub(ctx).ListNotifications(req)
    rows = [
        [
            n.id,
            shown_status(n),
            n.attempts,
            ",".join(n.channels),
            ",".join(n.recipients)[:40],
            n.subject[:40],
            n.last_error[:40],
        ]
        for n in page.notifications
    ]
    table(rows, ["id", "status", "attempts", "channels", "to", "subject", "last error"])
    click.echo(f"{len(rows)} of {page.total_size}", err=True)


@notify.command("show")
@click.argument("notification_id")
@school_option
@click.pass_context
def notify_show(ctx: click.Context, notification_id: str) -> None:
    """One notification with every delivery, as JSON."""
    with rpc_errors():
        n = _stub(ctx).GetNotification(pb.GetNotificationRequest(id=notification_id)).notification
    click.echo(json.dumps(json_format.MessageToDict(n), indent=2, ensure_ascii=False))


@notify.command("retry")
@click.argument("notification_id")
@school_option
@click.pass_context
def notify_retry(ctx: click.Context, notification_id: str) -> None:
    """Deliver a failed or dead notification's undelivered recipients again (admin)."""
    with rpc_errors():
        n = (
            _stub(ctx)
            .RetryNotification(pb.RetryNotificationRequest(id=notification_id))
            .notification
        )
    click.echo(f"notification {n.id} {STATUS.get(n.status, '?')}")


@notify.command("channels")
@school_option
@click.pass_context
def notify_channels(ctx: click.Context) -> None:
    """The configured channels, whether each is healthy, and what waits in the outbox."""
    with rpc_errors():
        chans = _stub(ctx).ListChannels(pb.ListChannelsRequest()).channels
    table(
        [[c.name, c.kind, "yes" if c.healthy else "no", c.pending, c.detail] for c in chans],
        ["channel", "kind", "healthy", "pending", "detail"],
    )
