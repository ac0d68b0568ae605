"""Logging filter: one structured line per RPC (method, code, duration, caller, peer)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import grpc

from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from ferry.rpc.filters.client import ClientFilter, OutgoingCall

if TYPE_CHECKING:
    from ferry.app import App

log = logging.getLogger("ferry.rpc.access")


class LoggingFilter(Filter):
    def __init__(self, app: App | None = None) -> None:
        self.app = app

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        if call.method.min_role == 0 and code == grpc.StatusCode.OK:
            level = logging.DEBUG  # health probes every few seconds would drown the log
        else:
            level = logging.INFO if code in _QUIET else logging.WARNING
        if not log.isEnabledFor(level):
            return  # not even the line's fields are built
        log.log(
            level,
            "rpc %s %s",
            call.method.full_name,
            code.name,
            extra={
                "event": "rpc",
                "method": call.method.full_name,
                "code": code.name,
                "duration_ms": round((time.monotonic() - call.started) * 1000, 3),
                "caller": call.caller,
                "peer": call.peer,
                "details": details,
            },
        )


_QUIET = {
    grpc.StatusCode.OK,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}


client_log = logging.getLogger("ferry.rpc.client")


class LoggingClient(ClientFilter):
    """One JSON line per finished outgoing call."""

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        if not client_log.isEnabledFor(logging.INFO):
            return  # not even the line's fields are built
        client_log.info(
            "called %s",
            call.method,
            extra={
                "event": "rpc_client",
                "method": call.method,
                "code": code.name,
                "duration_ms": round((time.monotonic() - call.started) * 1000, 1),
            },
        )


class LoggingPlugin(FilterPlugin):
    """The `logging` filter: both halves."""

    server_half = LoggingFilter
    client_half = LoggingClient
