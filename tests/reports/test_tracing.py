"""The `tracing` filter plugin: a report asked for through the gateway is one trace, from
the gateway's call through the reports service to the SQL it ran, its context carried in
the gRPC metadata; without `tracing` in the filter lists nothing is traced."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ferry.app import App
from ferry.rpc.filters import tracing
from tests.gateway.conftest import bearer, gateway_for

CHAIN = "[logging, metrics, deadline, auth, tracing]"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_provider(provider)
    yield exporter
    tracing.set_provider(None)


def test_a_report_through_the_gateway_is_one_trace_down_to_the_sql(
    school_url: str, make_app: Callable[..., App], spans: InMemorySpanExporter
) -> None:
    app = make_app(school_url, FERRY_SERVER_FILTERS=CHAIN, FERRY_CLIENT_FILTERS=CHAIN)
    body = {"student_id": "S1", "semester": "2026-fall"}
    with gateway_for(app, ["reports"]) as client:
        spans.clear()  # start-up (health checks, migrations) is not this request
        r = client.post(
            "/api/v1/reports/student-performance", json=body, headers=bearer(app, "operator")
        )
    assert r.status_code == 200, r.text
    finished = spans.get_finished_spans()
    call = [
        s for s in finished if s.kind == SpanKind.CLIENT and s.name.endswith("GetStudentReport")
    ]
    assert len(call) == 1, [s.name for s in finished]
    root = call[0]
    trace_id = root.context.trace_id
    assert root.parent is None  # the gateway's call starts the trace
    served = [
        s for s in finished
        if s.kind == SpanKind.SERVER and s.name == "ferry.v1.ReportsService/GetStudentReport"
    ]  # fmt: skip
    assert len(served) == 1, [(s.name, s.kind) for s in finished]
    server = served[0]
    # Propagated through the gRPC metadata: the service's span continues the gateway's.
    assert server.context.trace_id == trace_id
    assert server.parent is not None and server.parent.span_id == root.context.span_id
    sql = [s for s in finished if s.attributes and "db.statement" in s.attributes]
    assert sql, "the report's SQL made no spans"
    mine = [s for s in sql if s.context.trace_id == trace_id]
    assert mine and len(mine) == len(sql)  # every statement is this request's
    assert all(s.parent is not None and s.parent.span_id == server.context.span_id for s in mine)
    assert any(
        str(s.attributes["db.statement"]).lstrip().upper().startswith("SELECT") for s in mine
    )
    assert {s.context.trace_id for s in [root, server, *mine]} == {trace_id}


def test_without_tracing_in_the_lists_nothing_is_traced(
    school_url: str, make_app: Callable[..., App], spans: InMemorySpanExporter
) -> None:
    app = make_app(school_url)
    with gateway_for(app, ["reports"]) as client:
        r = client.post(
            "/api/v1/reports/student-performance",
            json={"student_id": "S1", "semester": "2026-fall"},
            headers=bearer(app, "operator"),
        )
    assert r.status_code == 200
    assert spans.get_finished_spans() == ()


def test_the_exporter_settings_live_under_the_plugin(make_app: Callable[..., App]) -> None:
    app = make_app(
        "sqlite://",
        FERRY_PLUGINS_FILTERS_TRACING_ENDPOINT="http://collector:4317",
        FERRY_PLUGINS_FILTERS_TRACING_SAMPLE_RATIO="0.25",
    )
    s = app.plugin_settings("ferry.filters", "tracing")
    assert s.endpoint == "http://collector:4317" and s.sample_ratio == 0.25
