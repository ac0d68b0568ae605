"""Typed clients for calling Ferry services.

Every call gets a deadline (the caller's, else what is left of the current call's, else
the configured default), carries the auth token, and is retried on UNAVAILABLE only when
the contract marks the method idempotent (gRPC's own retry policy, built from the
descriptors).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pool

from ferry.config import ClientSettings
from ferry.rpc.filters import current_call
from ferry.rpc.methods import IDEMPOTENT
from ferry.v1 import export_pb2_grpc, import_pb2_grpc

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


def balancing_options(settings: ClientSettings) -> list[tuple[str, Any]]:
    """Channel options for `client.load_balancing_policy`: with round_robin each call goes
    to the next ready address a target resolves to (a dns:/// target naming a Kubernetes
    headless Service resolves to every ready pod), instead of one pinned connection."""
    policy = settings.load_balancing_policy
    return [("grpc.lb_policy_name", policy)] if policy else []


class _CallDefaults(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc,type-arg]
):
    """Adds a deadline and the bearer token to every outgoing call."""

    def __init__(self, timeout: float, token: Callable[[], str | None]):
        self.timeout = timeout
        self.token = token

    def _details(self, d: Any) -> Any:
        timeout = d.timeout
        if timeout is None:
            timeout = self.timeout
            call = current_call()
            left = call.remaining() if call is not None else None
            if left is not None:
                timeout = max(0.0, min(timeout, left))  # never outlive the call we serve
        metadata = list(d.metadata or [])
        token = self.token()
        if token and not any(k == "authorization" for k, _ in metadata):
            metadata.append(("authorization", f"Bearer {token}"))
        return _Details(d.method, timeout, metadata, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
        return continuation(self._details(d), request)

    def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
        return continuation(self._details(d), request)

    def intercept_stream_unary(self, continuation: Any, d: Any, requests: Any) -> Any:
        return continuation(self._details(d), requests)

    def intercept_stream_stream(self, continuation: Any, d: Any, requests: Any) -> Any:
        return continuation(self._details(d), requests)


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: Any,
        compression: Any,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class Clients:
    """Channels and typed stubs for the services named in `client.services`."""

    # service name in ferry.yaml -> (stub class, full proto name)
    STUBS: dict[str, tuple[type[Any], str]] = {
        "export": (export_pb2_grpc.ExportServiceStub, "ferry.v1.ExportService"),
        "import": (import_pb2_grpc.ImportServiceStub, "ferry.v1.ImportService"),
    }

    def __init__(self, settings: ClientSettings, token: Callable[[], str | None] = lambda: None):
        self.settings = settings
        self.token = token
        self._channels: dict[str, grpc.Channel] = {}

    def channel(self, service: str) -> grpc.Channel:
        """The channel for `service` (one per target, shared)."""
        target, timeout = self.settings.for_service(service)
        key = f"{target}|{timeout}"
        if key not in self._channels:
            full_names = [full for _, full in self.STUBS.values()]
            raw = grpc.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.enable_retries", 1),
                    (
                        "grpc.service_config",
                        retry_service_config(full_names, self.settings.max_attempts),
                    ),
                    *balancing_options(self.settings),
                ],
            )
            self._channels[key] = grpc.intercept_channel(raw, _CallDefaults(timeout, self.token))
        return self._channels[key]

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

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
