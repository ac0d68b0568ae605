"""Metrics filter: per-method request counts by status code and latency, for unary and
streaming RPCs, plus messages sent on server streams and received on client streams
(Prometheus, grpc-prometheus names).

With `metrics.school_label: true` (docs/tenants.md), each finished call is counted once
more with the school it acted for (`ferry_rpc_server_school_handled_total` and
`ferry_rpc_server_school_handling_seconds`, label `school`): its values are the codes the
auth filter found in the schools table, never a caller's text, so the series are bounded
by the schools the installation has. A call that acted for no school (refused before,
a platform admin's WhoAmI) is not counted there. The families above keep their labels:
`started` counts a call before the auth filter knows its school."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter, Histogram

from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from ferry.rpc.filters.client import ClientFilter, OutgoingCall
from ferry.rpc.methods import MethodInfo

if TYPE_CHECKING:
    from ferry.app import App

LABELS = ("grpc_service", "grpc_method", "grpc_type")

STARTED = Counter("ferry_rpc_server_started_total", "RPCs started on the server.", LABELS)
HANDLED = Counter(
    "ferry_rpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    (*LABELS, "grpc_code"),
)
_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)
LATENCY = Histogram(
    "ferry_rpc_server_handling_seconds",
    "Time from the start of an RPC to its end (whole stream for streaming RPCs).",
    LABELS,
    buckets=_BUCKETS,
)
_SCHOOL_LABELS = (*LABELS, "school")
SCHOOL_HANDLED = Counter(
    "ferry_rpc_server_school_handled_total",
    "RPCs completed on the server, by status code and the school they acted for "
    "(only with metrics.school_label: true).",
    (*_SCHOOL_LABELS, "grpc_code"),
)
SCHOOL_LATENCY = Histogram(
    "ferry_rpc_server_school_handling_seconds",
    "Time from the start of an RPC to its end, by the school it acted for "
    "(only with metrics.school_label: true).",
    _SCHOOL_LABELS,
    buckets=_BUCKETS,
)
SENT = Counter("ferry_rpc_server_msg_sent_total", "Messages sent on server streams.", LABELS)
RECEIVED = Counter(
    "ferry_rpc_server_msg_received_total", "Messages received on client streams.", LABELS
)


class MetricsFilter(Filter):
    def __init__(self, app: App | None = None) -> None:
        self.app = app
        self.school_label = bool(app is not None and app.settings.metrics.school_label)

    def start(self, call: RpcCall) -> None:
        _children(call.method).started.inc()

    def message(self, call: RpcCall) -> None:
        _children(call.method).sent.inc()

    def received(self, call: RpcCall) -> None:
        _children(call.method).received.inc()

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        children = _children(call.method)
        took = time.monotonic() - call.started
        children.handled(code).inc()
        children.latency.observe(took)
        if self.school_label:
            # Set by the auth filter (it finishes first) once the school was found.
            school = call.attrs.get("school_code")
            if school:
                _school_children(call.method, str(school)).record(code, took)


class _ByCode:
    """A counter's children of one label tuple, by status code, each looked up once."""

    __slots__ = ("_by", "_counter", "_labels")

    def __init__(self, counter: Counter, labels: tuple[str, ...]) -> None:
        self._counter, self._labels = counter, labels
        self._by: dict[grpc.StatusCode, Any] = {}

    def __call__(self, code: grpc.StatusCode) -> Any:
        child = self._by.get(code)
        if child is None:
            child = self._by[code] = self._counter.labels(*self._labels, code.name)
        return child


class _Children:
    """One method's labelled series, looked up once (labels() costs a lock and a dict
    walk per call, which a cache hit served in ~1 ms notices)."""

    def __init__(self, method: MethodInfo) -> None:
        self.labels = (method.service, method.name, method.kind)
        self.started = STARTED.labels(*self.labels)
        self.sent = SENT.labels(*self.labels)
        self.received = RECEIVED.labels(*self.labels)
        self.latency = LATENCY.labels(*self.labels)
        self.handled = _ByCode(HANDLED, self.labels)


@functools.lru_cache(maxsize=1024)
def _children(method: MethodInfo) -> _Children:
    return _Children(method)


class _SchoolChildren:
    """One method's series of one school (metrics.school_label)."""

    def __init__(self, method: MethodInfo, school: str) -> None:
        self.labels = (method.service, method.name, method.kind, school)
        self.latency = SCHOOL_LATENCY.labels(*self.labels)
        self.handled = _ByCode(SCHOOL_HANDLED, self.labels)

    def record(self, code: grpc.StatusCode, took: float) -> None:
        self.handled(code).inc()
        self.latency.observe(took)


@functools.lru_cache(maxsize=4096)
def _school_children(method: MethodInfo, school: str) -> _SchoolChildren:
    return _SchoolChildren(method, school)


_CLIENT_LABELS = ("grpc_service", "grpc_method")
CLIENT_STARTED = Counter(
    "ferry_rpc_client_started_total", "RPCs started by this process.", _CLIENT_LABELS
)
CLIENT_HANDLED = Counter(
    "ferry_rpc_client_handled_total",
    "RPCs this process made that completed, by status code.",
    (*_CLIENT_LABELS, "grpc_code"),
)
CLIENT_LATENCY = Histogram(
    "ferry_rpc_client_handling_seconds",
    "Time from the start of an outgoing RPC to its end.",
    _CLIENT_LABELS,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


class _ClientChildren:
    """One outgoing method's series: labels() checks and locks on every call, a child is
    only incremented (every gateway request makes one outgoing call)."""

    def __init__(self, method: str) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self.labels = (service, name)
        self.started = CLIENT_STARTED.labels(service, name)
        self.latency = CLIENT_LATENCY.labels(service, name)
        self.handled = _ByCode(CLIENT_HANDLED, self.labels)


@functools.lru_cache(maxsize=4096)
def _client_children(method: str) -> _ClientChildren:
    return _ClientChildren(method)


class MetricsClient(ClientFilter):
    def start(self, call: OutgoingCall) -> None:
        _client_children(call.method).started.inc()

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        children = _client_children(call.method)
        children.handled(code).inc()
        children.latency.observe(time.monotonic() - call.started)


class MetricsPlugin(FilterPlugin):
    """The `metrics` filter: both halves."""

    server_half = MetricsFilter
    client_half = MetricsClient
