"""Metrics filter: per-method request counts by status code and latency, for unary and
streaming RPCs, plus messages sent on server streams and received on client streams
(Prometheus, grpc-prometheus names)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc
from prometheus_client import Counter, Histogram

from ferry.rpc.filters import Filter, RpcCall
from ferry.rpc.filters.client import MetricsClient

if TYPE_CHECKING:
    from ferry.app import App

LABELS = ("grpc_service", "grpc_method", "grpc_type")

STARTED = Counter("ferry_rpc_server_started_total", "RPCs started on the server.", LABELS)
HANDLED = Counter(
    "ferry_rpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    (*LABELS, "grpc_code"),
)
LATENCY = Histogram(
    "ferry_rpc_server_handling_seconds",
    "Time from the start of an RPC to its end (whole stream for streaming RPCs).",
    LABELS,
    buckets=(
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
    ),
)
SENT = Counter("ferry_rpc_server_msg_sent_total", "Messages sent on server streams.", LABELS)
RECEIVED = Counter(
    "ferry_rpc_server_msg_received_total", "Messages received on client streams.", LABELS
)


class MetricsFilter(Filter):
    # The half that runs on outgoing calls (client.filters).
    client = MetricsClient

    def __init__(self, app: App | None = None) -> None:
        self.app = app

    def start(self, call: RpcCall) -> None:
        STARTED.labels(*_labels(call)).inc()

    def message(self, call: RpcCall) -> None:
        SENT.labels(*_labels(call)).inc()

    def received(self, call: RpcCall) -> None:
        RECEIVED.labels(*_labels(call)).inc()

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        labels = _labels(call)
        HANDLED.labels(*labels, code.name).inc()
        LATENCY.labels(*labels).observe(time.monotonic() - call.started)


def _labels(call: RpcCall) -> tuple[str, str, str]:
    return call.method.service, call.method.name, call.method.kind
