"""The webhook channel against a real local HTTP server that verifies every call with the
standardwebhooks library."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from ferry.app import App
from ferry.v1 import notify_pb2 as pb
from tests.notify.conftest import serving
from tests.notify.helpers import WebhookReceiver, eventually


def test_signed_post_verifies(notify_app: Callable[..., App], hook: WebhookReceiver) -> None:
    app = notify_app(hook_url=hook.url)
    with serving(app) as (_srv, c):
        n = c.send(
            channels=["webhook"],
            template="export_failed",
            event_id="job-9:failed",
            variables={
                "export_type": "grades",
                "format": "pdf",
                "error": "disk full",
                "job_id": "job-9",
            },
        ).notification
        done = c.wait(n.id)
    assert done.status == pb.NOTIFICATION_STATUS_SENT
    assert [d.recipient for d in done.deliveries] == ["ops"]  # every endpoint when none named
    assert hook.bad == [] and len(hook.received) == 1
    payload = hook.received[0]
    assert payload["type"] == "ferry.export_failed"
    assert payload["data"]["event_id"] == "job-9:failed"
    assert payload["data"]["variables"]["error"] == "disk full"
    assert hook.ids == [done.deliveries[0].message_id]


def test_5xx_then_ok_keeps_the_webhook_id(
    notify_app: Callable[..., App], hook: WebhookReceiver
) -> None:
    hook.replies.extend([(500, {}), (503, {"Retry-After": "0"})])
    app = notify_app(hook_url=hook.url)
    with serving(app) as (_srv, c):
        n = c.send(channels=["webhook"], recipients=["ops"], subject="s", body="b").notification
        done = c.wait(n.id)
    assert done.status == pb.NOTIFICATION_STATUS_SENT and done.deliveries[0].attempts == 3
    assert len(hook.paths) == 3 and hook.ids == [done.deliveries[0].message_id]


def test_429_honours_retry_after(notify_app: Callable[..., App], hook: WebhookReceiver) -> None:
    hook.replies.append((429, {"Retry-After": "2"}))
    app = notify_app(hook_url=hook.url)
    with serving(app) as (_srv, c):
        started = time.monotonic()
        n = c.send(channels=["webhook"], recipients=["ops"], subject="s", body="b").notification
        pending = eventually(lambda: (x := c.get(n.id)).deliveries[0].last_error and x)
        assert "answered 429" in pending.deliveries[0].last_error
        when = pending.deliveries[0].next_attempt_at.ToDatetime().timestamp()
        assert when - pending.updated_at.ToDatetime().timestamp() > 1.5  # not the 0.3 s schedule
        done = c.wait(n.id)
        assert time.monotonic() - started >= 1.9
    assert done.status == pb.NOTIFICATION_STATUS_SENT


def test_410_disables_the_endpoint_until_an_admin_retries(
    notify_app: Callable[..., App], hook: WebhookReceiver
) -> None:
    hook.replies.append((410, {}))
    app = notify_app(hook_url=hook.url)
    with serving(app) as (_srv, c):
        first = c.send(channels=["webhook"], recipients=["ops"], subject="1", body="b").notification
        assert c.wait(first.id).status == pb.NOTIFICATION_STATUS_FAILED
        chans = {
            x.name: x for x in c.stub.ListChannels(pb.ListChannelsRequest(), metadata=c.md).channels
        }
        assert not chans["webhook"].healthy and "webhook/ops" in chans["webhook"].detail
        second = c.send(
            channels=["webhook"], recipients=["ops"], subject="2", body="b"
        ).notification
        done = c.wait(second.id)
        assert done.status == pb.NOTIFICATION_STATUS_FAILED
        assert "switched off" in done.deliveries[0].last_error
        assert len(hook.paths) == 1  # the switched-off endpoint was not called again
        c.stub.RetryNotification(pb.RetryNotificationRequest(id=first.id), metadata=c.md)
        assert c.wait(first.id).status == pb.NOTIFICATION_STATUS_SENT
    assert len(hook.received) == 1


def test_redirect_is_not_followed(notify_app: Callable[..., App], hook: WebhookReceiver) -> None:
    hook.replies.append((302, {"Location": "http://127.0.0.1:1/elsewhere"}))
    app = notify_app(hook_url=hook.url)
    with serving(app) as (_srv, c):
        n = c.send(channels=["webhook"], recipients=["ops"], subject="s", body="b").notification
        done = c.wait(n.id)
    assert done.status == pb.NOTIFICATION_STATUS_FAILED
    assert "redirect, not followed" in done.deliveries[0].last_error
    assert hook.paths == ["/hook"]


def test_requests_name_endpoints_never_urls(
    notify_app: Callable[..., App], hook: WebhookReceiver
) -> None:
    app = notify_app(hook_url=hook.url)
    with serving(app) as (_srv, c), pytest.raises(grpc.RpcError) as e:
        c.send(channels=["webhook"], recipients=["http://evil.example/x"], subject="s", body="b")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown webhook endpoint 'http://evil.example/x'; configured: ops" in (
        e.value.details() or ""
    )
    assert hook.paths == []


def test_bad_channel_config_stops_start_up(
    notify_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry import config
    from ferry.plugins import PluginError
    from tests.conftest import running

    monkeypatch.delenv("TEST_WEBHOOK_SECRET", raising=False)
    app = notify_app(hook_url="http://127.0.0.1:9/hook")
    with pytest.raises(PluginError) as e, running(app, ["notify"]):
        pass
    assert "plugins.channels.webhook.endpoints.ops.secret_env" in str(e.value)
    with pytest.raises(config.ConfigError) as ce:
        notify_app(FERRY_PLUGINS_CHANNELS_SMTP_SECURITY="ssl")
    assert "plugins.channels.smtp.security" in str(ce.value)
