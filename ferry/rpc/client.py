"""Typed clients for calling Ferry services.

Every call runs through the client filters of `client.filters` (ferry/rpc/filters/client.py):
a deadline (the caller's, else what is left of the current call's, else the configured
default), the auth token, metrics and a log line. Calls are retried on UNAVAILABLE only when
the contract marks the method idempotent (gRPC's own retry policy, built from the
descriptors).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pool

from ferry.config import ClientSettings
from ferry.rpc.filters import client as client_filters
from ferry.rpc.filters.client import ClientChain
from ferry.rpc.methods import IDEMPOTENT
from ferry.v1 import (
    auth_pb2_grpc,
    export_pb2_grpc,
    import_pb2_grpc,
    notify_pb2_grpc,
    reports_pb2_grpc,
)

S = TypeVar("S")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def retry_service_config(services: Iterable[str], max_attempts: int) -> str:
    """A gRPC service config retrying idempotent methods of `services` on UNAVAILABLE."""
    pool = descriptor_pool.Default()
    names = []
    for full in services:
        svc = pool.FindServiceByName(full)
        for m in svc.methods:
            if m.GetOptions().idempotency_level in IDEMPOTENT:
                names.append({"service": full, "method": m.name})
    config: dict[str, Any] = {"methodConfig": []}
    if names and max_attempts >= 2:  # gRPC rejects a policy of one attempt
        config["methodConfig"].append(
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return json.dumps(config)


def connection_options(settings: ClientSettings) -> list[tuple[str, Any]]:
    """Channel options for how a channel spreads calls and reconnects.

    `client.load_balancing_policy`: with round_robin each call goes to the next ready
    address a target resolves to (a dns:/// target naming a Kubernetes headless Service
    resolves to every ready pod), instead of one pinned connection.
    `client.max_reconnect_backoff_seconds` caps the wait between reconnect tries, so an
    address that comes back gets calls again within that long."""
    backoff_ms = int(settings.max_reconnect_backoff_seconds * 1000)
    out: list[tuple[str, Any]] = [
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ("grpc.initial_reconnect_backoff_ms", min(1000, backoff_ms)),
        ("grpc.min_reconnect_backoff_ms", min(1000, backoff_ms)),
    ]
    policy = settings.load_balancing_policy
    return [*out, ("grpc.lb_policy_name", policy)] if policy else out


class Clients:
    """Channels and typed stubs for the services named in `client.services`."""

    # service name in ferry.yaml -> (stub class, full proto name)
    STUBS: dict[str, tuple[type[Any], str]] = {
        "export": (export_pb2_grpc.ExportServiceStub, "ferry.v1.ExportService"),
        "import": (import_pb2_grpc.ImportServiceStub, "ferry.v1.ImportService"),
        "auth": (auth_pb2_grpc.AuthServiceStub, "ferry.v1.AuthService"),
        "notify": (notify_pb2_grpc.NotifyServiceStub, "ferry.v1.NotifyService"),
        "reports": (reports_pb2_grpc.ReportsServiceStub, "ferry.v1.ReportsService"),
    }

    def __init__(
        self,
        settings: ClientSettings,
        token: Callable[[], str | None] = lambda: None,
        credentials: grpc.ChannelCredentials | None = None,
        extra_options: Sequence[tuple[str, Any]] = (),
        app: Any = None,
    ):
        self.settings = settings
        self.token = token
        # The client filters are plugins like any other, built by an App: the caller's, or
        # one around these client settings alone.
        self.app = app
        # TLS (ferry.rpc.tls): None is plaintext.
        self.credentials = credentials
        self.extra_options = list(extra_options)
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, service: str) -> grpc.Channel:
        """The channel for `service` (one per target, shared)."""
        target, timeout = self.settings.for_service(service)
        key = f"{target}|{timeout}"
        if key not in self._channels:
            full_names = [full for _, full in self.STUBS.values()]
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.enable_retries", 1),
                (
                    "grpc.service_config",
                    retry_service_config(full_names, self.settings.max_attempts),
                ),
                *connection_options(self.settings),
                *self.extra_options,
            ]
            if self.credentials is not None:
                raw = grpc.secure_channel(target, self.credentials, options=options)
            else:
                raw = grpc.insecure_channel(target, options=options)
            chain = ClientChain(
                client_filters.build(self.settings.filters, self._app()), timeout, self.token
            )
            self._channels[key] = grpc.intercept_channel(raw, chain)
        return self._channels[key]

    def _app(self) -> Any:
        if self.app is None:
            from ferry.app import App
            from ferry.config import Settings

            self.app = App(Settings(client=self.settings))
        return self.app

    def stub(self, service: str) -> Any:
        try:
            stub_cls, _ = self.STUBS[service]
        except KeyError:
            raise KeyError(
                f"no client for service {service!r}; known: {', '.join(self.STUBS)}"
            ) from None
        return stub_cls(self.channel(service))

    def export(self) -> export_pb2_grpc.ExportServiceStub:
        """A typed ExportService client."""
        return export_pb2_grpc.ExportServiceStub(self.channel("export"))

    def imports(self) -> import_pb2_grpc.ImportServiceStub:
        """A typed ImportService client."""
        return import_pb2_grpc.ImportServiceStub(self.channel("import"))

    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        """A typed AuthService client."""
        return auth_pb2_grpc.AuthServiceStub(self.channel("auth"))

    def notify(self) -> notify_pb2_grpc.NotifyServiceStub:
        """A typed NotifyService client."""
        return notify_pb2_grpc.NotifyServiceStub(self.channel("notify"))

    def reports(self) -> reports_pb2_grpc.ReportsServiceStub:
        """A typed ReportsService client."""
        return reports_pb2_grpc.ReportsServiceStub(self.channel("reports"))

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
