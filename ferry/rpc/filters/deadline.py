"""Deadline filter: every call gets a deadline, the client's or the configured default.

The effective deadline is on the RpcCall (see `current_call().remaining()`), so servicers
can pass what is left to the database and to outgoing calls; server streams that run past
it end with DEADLINE_EXCEEDED between messages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ferry.errors import DeadlineExceeded
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall, current_call
from ferry.rpc.filters.client import ClientFilter, OutgoingCall
from ferry.rpc.methods import service_key

if TYPE_CHECKING:
    from ferry.app import App


class DeadlineFilter(Filter):
    def __init__(self, app: App) -> None:
        server = app.settings.server
        self.default = server.default_timeout_seconds
        self.timeouts: dict[str, float] = {}
        for svc in server.services:
            for method, seconds in svc.method_timeouts.items():
                self.timeouts[f"{svc.name}/{method}"] = seconds
            if svc.timeout_seconds is not None:
                self.timeouts[svc.name] = svc.timeout_seconds

    def _timeout(self, call: RpcCall) -> float:
        short = service_key(call.method.service)
        return self.timeouts.get(
            f"{short}/{call.method.name}", self.timeouts.get(short, self.default)
        )

    def start(self, call: RpcCall) -> None:
        remaining = call.context.time_remaining()
        if remaining is not None and remaining < 10 * 365 * 86400:  # "no deadline" is huge
            call.deadline = time.monotonic() + remaining
        else:
            call.deadline = time.monotonic() + self._timeout(call)

    def message(self, call: RpcCall) -> None:
        if call.deadline is not None and time.monotonic() > call.deadline:
            raise DeadlineExceeded(f"{call.method.name} ran past its deadline")

    def received(self, call: RpcCall) -> None:
        """An upload that outlives its deadline ends at its next message."""
        if call.deadline is not None and time.monotonic() > call.deadline:
            raise DeadlineExceeded(f"{call.method.name} upload ran past its deadline")


class DeadlineClient(ClientFilter):
    """A call without a timeout gets the client's configured one, and never outlives the
    call being served on this thread (deadline propagation)."""

    def start(self, call: OutgoingCall) -> None:
        timeout = call.timeout if call.timeout is not None else call.default_timeout
        serving = current_call()
        left = serving.remaining() if serving is not None else None
        if left is not None:
            timeout = max(0.0, min(timeout, left))  # never outlive the call we serve
        call.timeout = timeout


class DeadlinePlugin(FilterPlugin):
    """The `deadline` filter: both halves."""

    server_half = DeadlineFilter
    client_half = DeadlineClient
