"""Client filters: the chain every outgoing call runs through (`client.filters`).

They are chosen by the same names as server filters: a `ferry.filters` plugin offers its
client half as its `client` attribute (a class taking the App, or nothing). The built-in
ones:

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
from prometheus_client import Counter, Histogram

from ferry.rpc.filters import current_call
from ferry.rpc.methods import split

log = logging.getLogger("ferry.rpc.client")


@dataclass
class OutgoingCall:
    """One outgoing call as client filters see it; `start` may change timeout and metadata."""

    method: str  # "/ferry.v1.ExportService/ListSemesters"
    timeout: float | None
    metadata: list[tuple[str, str]]
    started: float = field(default_factory=time.monotonic)

    @property
    def service(self) -> str:
        return split(self.method)[0]

    @property
    def name(self) -> str:
        return split(self.method)[1]


class ClientFilter:
    """Base client filter; every one is built as `cls(default_timeout=..., token=...)`."""

    def __init__(
        self, default_timeout: float = 30.0, token: Callable[[], str | None] = lambda: None
    ) -> None:
        self.default = default_timeout
        self.token = token

    def start(self, call: OutgoingCall) -> None:
        return None

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        return None


class DeadlineClient(ClientFilter):
    def start(self, call: OutgoingCall) -> None:
        timeout = call.timeout if call.timeout is not None else self.default
        serving = current_call()
        left = serving.remaining() if serving is not None else None
        if left is not None:
            timeout = max(0.0, min(timeout, left))  # never outlive the call we serve
        call.timeout = timeout


class TokenClient(ClientFilter):
    def start(self, call: OutgoingCall) -> None:
        if any(k == "authorization" for k, _ in call.metadata):
            return
        token = self.token()
        if token:
            call.metadata.append(("authorization", f"Bearer {token}"))


_LABELS = ("grpc_service", "grpc_method")
STARTED = Counter("ferry_rpc_client_started_total", "RPCs started by this process.", _LABELS)
HANDLED = Counter(
    "ferry_rpc_client_handled_total",
    "RPCs this process made that completed, by status code.",
    (*_LABELS, "grpc_code"),
)
LATENCY = Histogram(
    "ferry_rpc_client_handling_seconds",
    "Time from the start of an outgoing RPC to its end.",
    _LABELS,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


class MetricsClient(ClientFilter):
    def start(self, call: OutgoingCall) -> None:
        STARTED.labels(call.service, call.name).inc()

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        HANDLED.labels(call.service, call.name, code.name).inc()
        LATENCY.labels(call.service, call.name).observe(time.monotonic() - call.started)


class LoggingClient(ClientFilter):
    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        log.info(
            "called %s",
            call.method,
            extra={
                "event": "rpc_client",
                "method": call.method,
                "code": code.name,
                "duration_ms": round((time.monotonic() - call.started) * 1000, 1),
            },
        )


def build(
    names: Sequence[str], default_timeout: float, token: Callable[[], str | None]
) -> list[ClientFilter]:
    """The client filters for `names`, each the `client` half of a `ferry.filters` plugin."""
    from ferry import plugins

    out: list[ClientFilter] = []
    for name in names:
        obj = plugins.load("ferry.filters", name, allow_path=True)
        half = getattr(obj, "client", None)
        if half is None:
            raise plugins.PluginError(
                f"client.filters: filter {name!r} has no client half; "
                "known client filters: deadline, auth, metrics, logging"
            )
        out.append(half(default_timeout=default_timeout, token=token))
    return out


def start_call(
    filters: Sequence[ClientFilter], method: str | bytes, timeout: float | None, metadata: Any
) -> OutgoingCall:
    name = method.decode() if isinstance(method, bytes) else method  # grpc.aio sends bytes
    call = OutgoingCall(name, timeout, list(metadata or []))
    for f in filters:
        f.start(call)
    return call


def finish_call(filters: Sequence[ClientFilter], call: OutgoingCall, code: Any) -> None:
    for f in reversed(filters):
        try:
            f.finish(call, code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN)
        except Exception:  # a broken filter must not change the call's outcome
            log.exception("client filter %s failed in finish", type(f).__name__)


class ClientChain(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc,type-arg]
):
    """Runs the client filters around every call on a sync channel."""

    def __init__(self, filters: Sequence[ClientFilter]) -> None:
        self.filters = list(filters)

    def _run(self, continuation: Any, d: Any, request: Any) -> Any:
        call = start_call(self.filters, d.method, d.timeout, d.metadata)
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
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[misc,type-arg]
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[misc,type-arg]
):
    """The same client filters around every call on a grpc.aio channel (the gateway)."""

    def __init__(self, filters: Sequence[ClientFilter]) -> None:
        self.filters = list(filters)
        self._pending: set[Any] = set()

    async def _run(self, continuation: Any, d: Any, request: Any) -> Any:
        import asyncio

        call = start_call(self.filters, d.method, d.timeout, list(d.metadata or []))
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
