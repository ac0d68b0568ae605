"""Client filters: the chain every outgoing call runs through (`client.filters`).

They are chosen by the same names as server filters: a `ferry.filters` plugin
(`ferry.rpc.filters.FilterPlugin`) offers both halves from one module, its client half
built with no arguments. The built-in ones:

- `deadline`: a call without a timeout gets the configured one, and never outlives the
  call being served on this thread (deadline propagation);
- `auth`: the bearer token (the CLI's, or the one the process was given);
- `metrics`: `ferry_rpc_client_started_total`, `ferry_rpc_client_handled_total{grpc_code}`
  and `ferry_rpc_client_handling_seconds`;
- `logging`: one JSON line per finished outgoing call.

The sync CLI and the services use `ClientChain` (a grpc interceptor); the gateway's
grpc.aio calls run the same filters through `start_call`/`finish_call`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from ferry.rpc.methods import split

log = logging.getLogger("ferry.rpc.client")


@dataclass
class OutgoingCall:
    """One outgoing call as client filters see it; `start` may change timeout and metadata."""

    method: str  # "/ferry.v1.ExportService/ListSemesters"
    timeout: float | None
    metadata: list[tuple[str, str]]
    started: float = field(default_factory=time.monotonic)
    # What the calling client holds: its configured timeout and its bearer token.
    default_timeout: float = 30.0
    token: Callable[[], str | None] = lambda: None
    attrs: dict[str, Any] = field(default_factory=dict)  # what a filter keeps for `finish`

    @property
    def service(self) -> str:
        return split(self.method)[0]

    @property
    def name(self) -> str:
        return split(self.method)[1]


class ClientFilter:
    """Base client half: override what you need. The half of a `ferry.filters` plugin
    (`FilterPlugin.client_half`), built with no arguments: the caller's default timeout
    and token are on the OutgoingCall."""

    def start(self, call: OutgoingCall) -> None:
        return None

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        return None


def build(names: Sequence[str], app: Any) -> list[ClientFilter]:
    """The client filters for `names`: the client half of each `ferry.filters` plugin,
    built by `app.plugin` like every plugin."""
    from ferry import plugins

    out: list[ClientFilter] = []
    for name in names:
        half = app.plugin("ferry.filters", name).client()
        if half is None:
            known = [n for n in plugins.names("ferry.filters") if _has_client(app, n)]
            raise plugins.PluginError(
                f"client.filters: filter {name!r} has no client half; "
                f"known client filters: {', '.join(known)}"
            )
        out.append(half)
    return out


def _has_client(app: Any, name: str) -> bool:
    try:
        return app.plugin("ferry.filters", name).client() is not None
    except Exception:  # a plugin that cannot be built has no client half to offer
        return False


def start_call(
    filters: Sequence[ClientFilter],
    method: str | bytes,
    timeout: float | None,
    metadata: Any,
    default_timeout: float = 30.0,
    token: Callable[[], str | None] = lambda: None,
) -> OutgoingCall:
    name = method.decode() if isinstance(method, bytes) else method  # grpc.aio sends bytes
    call = OutgoingCall(
        name, timeout, list(metadata or []), time.monotonic(), default_timeout, token
    )
    for f in filters:
        f.start(call)
    return call


def finish_call(filters: Sequence[ClientFilter], call: OutgoingCall, code: Any) -> None:
    for f in reversed(filters):
        try:
            f.finish(call, code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN)
        except Exception:  # a broken filter must not change the call's outcome
            log.exception("client filter %s failed in finish", type(f).__name__)


class _Chain:
    """The client filters of one channel and what its client holds for them."""

    def __init__(
        self,
        filters: Sequence[ClientFilter],
        default_timeout: float = 30.0,
        token: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.filters = list(filters)
        self.default_timeout = default_timeout
        self.token = token
        self._pending: set[Any] = set()  # grpc.aio: finishing tasks, kept until they ran


class ClientChain(
    _Chain,
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc,type-arg]
):
    """Runs the client filters around every call on a sync channel."""

    def _run(self, continuation: Any, d: Any, request: Any) -> Any:
        call = start_call(
            self.filters, d.method, d.timeout, d.metadata, self.default_timeout, self.token
        )
        details = _Details(
            d.method, call.timeout, call.metadata, d.credentials, d.wait_for_ready, d.compression
        )
        response = continuation(details, request)
        response.add_done_callback(lambda r: finish_call(self.filters, call, r.code()))
        return response

    def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
        return self._run(continuation, d, request)

    def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
        return self._run(continuation, d, request)

    def intercept_stream_unary(self, continuation: Any, d: Any, requests: Any) -> Any:
        return self._run(continuation, d, requests)

    def intercept_stream_stream(self, continuation: Any, d: Any, requests: Any) -> Any:
        return self._run(continuation, d, requests)


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


class AioClientChain(
    _Chain,
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[misc,type-arg]
):
    """The same client filters around every call on a grpc.aio channel (the gateway)."""

    async def _run(self, continuation: Any, d: Any, request: Any) -> Any:
        import asyncio

        call = start_call(
            self.filters, d.method, d.timeout, list(d.metadata or []), self.default_timeout,
            self.token,
        )  # fmt: skip
        details = grpc.aio.ClientCallDetails(
            d.method, call.timeout, grpc.aio.Metadata(*call.metadata), d.credentials,
            d.wait_for_ready,
        )  # fmt: skip
        rpc = await continuation(details, request)

        async def finished() -> None:
            try:
                code = await rpc.code()
            except Exception:  # the call object failed in a way that has no status
                code = grpc.StatusCode.UNKNOWN
            finish_call(self.filters, call, code)

        task = asyncio.ensure_future(finished())
        self._pending.add(task)  # keep a reference until it ran
        task.add_done_callback(self._pending.discard)
        return rpc

    async def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
        return await self._run(continuation, d, request)

    async def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
        return await self._run(continuation, d, request)

    async def intercept_stream_unary(self, continuation: Any, d: Any, requests: Any) -> Any:
        return await self._run(continuation, d, requests)

    async def intercept_stream_stream(self, continuation: Any, d: Any, requests: Any) -> Any:
        return await self._run(continuation, d, requests)
