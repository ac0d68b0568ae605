"""Fixtures for the notify tests: an app on a fresh database with fast outbox timings, a
real server serving NotifyService, and real SMTP / webhook receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest

from ferry.app import App
from ferry.rpc.server import Server
from ferry.v1 import notify_pb2 as pb
from ferry.v1 import notify_pb2_grpc
from tests.conftest import auth, running
from tests.notify.helpers import SECRET, SmtpServer, WebhookReceiver

FAST = {
    "FERRY_NOTIFY_POLL_SECONDS": "0.05",
    "FERRY_NOTIFY_RETRY_SCHEDULE_SECONDS": "[0.3]",
    "FERRY_NOTIFY_RETRY_JITTER": "0",
    "FERRY_NOTIFY_LEASE_SECONDS": "5",
}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    r = WebhookReceiver()
    yield r
    r.stop()


@pytest.fixture
def notify_app(empty_url: str, make_app: Callable[..., App]) -> Callable[..., App]:
    """Apps on the test's database with fast timings; keyword overrides are FERRY_* vars."""

    def make(smtp_port: int | None = None, hook_url: str = "", **overrides: Any) -> App:
        env: dict[str, Any] = dict(FAST)
        channels = ["log"]
        if smtp_port is not None:
            channels.append("smtp")
            env["FERRY_PLUGINS_CHANNELS_SMTP_PORT"] = str(smtp_port)
            env["FERRY_PLUGINS_CHANNELS_SMTP_TIMEOUT_SECONDS"] = "3"
            env["FERRY_PLUGINS_CHANNELS_SMTP_FROM_ADDRESS"] = "ferry@school.example"
        if hook_url:
            channels.append("webhook")
            env["FERRY_PLUGINS_CHANNELS_WEBHOOK_ENDPOINTS"] = (
                f"{{ops: {{url: '{hook_url}', secret_env: TEST_WEBHOOK_SECRET}}}}"
            )
            env["FERRY_PLUGINS_CHANNELS_WEBHOOK_TIMEOUT_SECONDS"] = "3"
        env["FERRY_NOTIFY_CHANNELS"] = "[" + ", ".join(channels) + "]"
        env.update(overrides)
        return make_app(empty_url, **env)

    return make


class NotifyClient:
    def __init__(self, app: App, channel: grpc.Channel) -> None:
        self.stub = notify_pb2_grpc.NotifyServiceStub(channel)
        self.md = auth(app, "admin")

    def send(self, **kw: Any) -> pb.SendResponse:
        variables = kw.pop("variables", None)
        req = pb.SendRequest(**kw)
        if variables is not None:
            req.variables.update(variables)
        return self.stub.Send(req, metadata=self.md, timeout=10)

    def get(self, nid: str) -> pb.Notification:
        return self.stub.GetNotification(
            pb.GetNotificationRequest(id=nid), metadata=self.md, timeout=10
        ).notification

    def wait(self, nid: str, timeout: float = 15.0) -> pb.Notification:
        from tests.notify.helpers import eventually

        def settled() -> pb.Notification | None:
            n = self.get(nid)
            return n if n.status != pb.NOTIFICATION_STATUS_PENDING else None

        result: pb.Notification = eventually(settled, timeout)
        return result


@contextmanager
def serving(app: App) -> Iterator[tuple[Server, NotifyClient]]:
    with running(app, ["notify"]) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield srv, NotifyClient(app, ch)
