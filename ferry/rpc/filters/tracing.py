"""Tracing filter (OpenTelemetry): one trace per request across processes.

Both halves in this module, like every filter plugin. The client half opens a CLIENT span
around each outgoing call (the gateway's calls to the services, a service's calls to
another) and sends its context in the call's metadata (W3C `traceparent`); the server half
continues that trace with a SERVER span around the call, and every SQL statement the call
runs on the app's engine is a span inside it. Spans go to an OTLP collector over gRPC
(`plugins.filters.tracing`).

Off by default: it runs where `tracing` is listed, in `server.filters` (services) and
`client.filters` (the gateway, the CLI, services calling services).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, ClassVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import Field
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ferry.config import Strict
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from ferry.rpc.filters.client import ClientFilter, OutgoingCall


class TracingSettings(Strict):
    """`plugins.filters.tracing`: where spans go (an OTLP collector over gRPC)."""

    endpoint: str = "http://127.0.0.1:4317"
    insecure: bool = True  # plaintext to the collector (a sidecar or a node agent)
    headers: dict[str, str] = {}  # sent with every export, e.g. an API key
    timeout_seconds: float = Field(10.0, gt=0)
    service_name: str = "ferry"
    # Of the traces that start here, the share kept; a call carrying a trace follows its
    # caller's choice.
    sample_ratio: float = Field(1.0, ge=0, le=1)
    # How much of each SQL statement a database span keeps (its text, never its values).
    statement_chars: int = Field(1000, ge=0)


_lock = threading.Lock()
_provider: TracerProvider | None = None
SCOPE = "ferry"


def set_provider(provider: TracerProvider | None) -> None:
    """Use `provider` for this process's spans (tests collect them in memory; an embedding
    brings its own); None: build one from the settings again on next use."""
    global _provider
    with _lock:
        _provider = provider


def provider(settings: TracingSettings) -> TracerProvider:
    """The process's tracer provider, built on first use: spans batched to the OTLP
    collector of `settings`."""
    global _provider
    with _lock:
        if _provider is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            made = TracerProvider(
                resource=Resource.create({"service.name": settings.service_name}),
                sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            )
            made.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(
                        endpoint=settings.endpoint,
                        insecure=settings.insecure,
                        headers=dict(settings.headers),
                        timeout=settings.timeout_seconds,
                    )
                )
            )
            _provider = made
        return _provider


class TracingFilter(Filter):
    """The server half: a SERVER span per call, continuing the caller's trace, and the
    call's SQL as spans inside it."""

    def __init__(self, app: Any, tracer: trace.Tracer, settings: TracingSettings) -> None:
        self.tracer = tracer
        trace_sql(app.engine, tracer, settings.statement_chars)

    def start(self, call: RpcCall) -> None:
        parent = propagate.extract(call.metadata)
        span = self.tracer.start_span(
            call.method.full_name.lstrip("/"),
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": call.method.service,
                "rpc.method": call.method.name,
            },
        )
        call.attrs["trace_span"] = span
        call.attrs["trace_token"] = otel_context.attach(trace.set_span_in_context(span))

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        token = call.attrs.pop("trace_token", None)
        _end(call.attrs.pop("trace_span", None), code)
        if token is not None:
            otel_context.detach(token)


class TracingClient(ClientFilter):
    """The client half: a CLIENT span per outgoing call, its context in the metadata."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start(self, call: OutgoingCall) -> None:
        span = self.tracer.start_span(
            call.method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": call.service, "rpc.method": call.name},
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        call.metadata.extend(carrier.items())
        call.attrs["trace_span"] = span

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        _end(call.attrs.pop("trace_span", None), code)


def _end(span: Any, code: grpc.StatusCode) -> None:
    """End a call's span with its status code (an error status for anything but OK)."""
    if span is None:
        return
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


_traced: weakref.WeakSet[Engine] = weakref.WeakSet()


def trace_sql(engine: Engine, tracer: trace.Tracer, chars: int) -> None:
    """Every statement `engine` runs becomes a CLIENT span of the span current then (once
    per engine, however many filters ask)."""
    with _lock:
        if engine in _traced:
            return
        _traced.add(engine)
    system = engine.dialect.name

    def before(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if not trace.get_current_span().get_span_context().is_valid:
            return  # SQL outside any traced call (workers, start-up) makes no root spans
        words = statement.split(None, 1)
        span = tracer.start_span(
            (words[0].upper() if words else "SQL"),
            kind=SpanKind.CLIENT,
            attributes={"db.system": system, "db.statement": statement[:chars]},
        )
        conn.info.setdefault("trace_spans", []).append(span)

    def after(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        spans = conn.info.get("trace_spans")
        if spans:
            spans.pop().end()

    def failed(exception_context: Any) -> None:
        spans = exception_context.connection.info.get("trace_spans") if (
            exception_context.connection is not None
        ) else None  # fmt: skip
        if spans:
            span = spans.pop()
            span.set_status(
                Status(StatusCode.ERROR, type(exception_context.original_exception).__name__)
            )
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)


class TracingPlugin(FilterPlugin):
    """The `tracing` filter: both halves, sharing the process's tracer provider."""

    settings_model: ClassVar[type[Strict]] = TracingSettings

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.settings: TracingSettings = app.plugin_settings("ferry.filters", "tracing")
        self.tracer = provider(self.settings).get_tracer(SCOPE)

    def server(self) -> Filter:
        if self._server is None:
            self._server = TracingFilter(self.app, self.tracer, self.settings)
        return self._server

    def client(self) -> ClientFilter | None:
        return TracingClient(self.tracer)

    def close(self) -> None:
        """Send what is batched before the app goes."""
        found = _provider
        if found is not None:
            found.force_flush(int(self.settings.timeout_seconds * 1000))
