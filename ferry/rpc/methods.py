"""What the contract says about each RPC: its service, kind, min_role, idempotency."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool

from ferry.v1 import auth_pb2, export_pb2, import_pb2, notify_pb2, options_pb2, reports_pb2

# The generated modules of the contract, listed once (the gateway's routes read it too);
# importing them registers the contract in the default pool.
CONTRACT = (export_pb2, import_pb2, auth_pb2, notify_pb2, reports_pb2)

# Services anyone may call: load balancers and grpcurl need them without a token.
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
IDEMPOTENT = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)


@dataclass(frozen=True)
class MethodInfo:
    full_name: str  # "/ferry.v1.ExportService/StreamSession"
    service: str  # "ferry.v1.ExportService"
    name: str  # "StreamSession"
    kind: str  # unary | server_stream | client_stream | bidi_stream
    min_role: int  # 0 for open services
    idempotent: bool


def service_key(full_service: str) -> str:
    """'ferry.v1.ExportService' -> 'export': a service's name in ferry.yaml. The one place
    this is derived (filters, the gateway, health checks)."""
    return full_service.rpartition(".")[2].removesuffix("Service").lower()


def split(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, name = full_method.lstrip("/").rpartition("/")
    return service, name


@functools.lru_cache(maxsize=1024)
def lookup(full_method: str) -> MethodInfo:
    """Everything the contract declares about `full_method`.

    Methods of OPEN_SERVICES need no role; a Ferry method without a min_role option, or
    a method unknown to the contract, needs ROLE_ADMIN (closed by default).
    """
    service, name = split(full_method)
    open_ = service in OPEN_SERVICES
    try:
        desc = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        role = 0 if open_ else options_pb2.ROLE_ADMIN
        return MethodInfo(full_method, service, name, "unary", role, False)
    kind = {
        (False, False): "unary",
        (False, True): "server_stream",
        (True, False): "client_stream",
        (True, True): "bidi_stream",
    }[(desc.client_streaming, desc.server_streaming)]
    opts = desc.GetOptions()
    if open_:
        role = 0
    elif opts.HasExtension(options_pb2.min_role):
        role = opts.Extensions[options_pb2.min_role]
    else:
        role = options_pb2.ROLE_ADMIN
    return MethodInfo(full_method, service, name, kind, role, opts.idempotency_level in IDEMPOTENT)
