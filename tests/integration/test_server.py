"""A real in-process server on a loopback port, called over the wire."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from ferry.app import App
from ferry.bundle.stream import batch_digest
from ferry.datasets.query import count_in_scope
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.rpc.server import Server
from ferry.v1 import export_pb2, export_pb2_grpc
from tests.conftest import auth, running


@pytest.fixture
def server(seeded_url: str, make_app: Callable[..., App]) -> Iterator[tuple[App, Server]]:
    app = make_app(seeded_url)
    with running(app) as srv:
        yield app, srv


def channel(srv: Server) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{srv.port}")


def test_health_reports_each_service_serving(server: tuple[App, Server]) -> None:
    _, srv = server
    with channel(srv) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", "ferry.v1.ExportService"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            stub.Check(health_pb2.HealthCheckRequest(service="ferry.v1.Nope"), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services_and_serves_descriptors(server: tuple[App, Server]) -> None:
    _, srv = server
    with channel(srv) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="ferry.v1.ExportService"),
        ]
        listed, described = list(stub.ServerReflectionInfo(iter(reqs), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {"ferry.v1.ExportService", "grpc.health.v1.Health"} <= names
    fd = descriptor_pb2.FileDescriptorProto.FromString(
        described.file_descriptor_response.file_descriptor_proto[0]
    )
    assert fd.package == "ferry.v1"


def test_auth_denies_without_token_bad_token_and_weak_role(server: tuple[App, Server]) -> None:
    app, srv = server
    req = export_pb2.StreamSessionRequest(semester="2026-fall")
    with channel(srv) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.ListSemesters(export_pb2.ListSemestersRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.ListSemesters(
                export_pb2.ListSemestersRequest(),
                timeout=5,
                metadata=[("authorization", "Bearer junk")],
            )
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A viewer may list semesters but not stream a whole bundle.
        assert stub.ListSemesters(
            export_pb2.ListSemestersRequest(), timeout=5, metadata=auth(app, "viewer")
        ).semesters
        with pytest.raises(grpc.RpcError) as e:
            list(stub.StreamSession(req, timeout=5, metadata=auth(app, "viewer")))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "needs role operator" in e.value.details()
        assert list(stub.StreamSession(req, timeout=30, metadata=auth(app, "operator")))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_calls_by_code_for_unary_and_streams(server: tuple[App, Server]) -> None:
    app, srv = server
    labels = {
        "grpc_service": "ferry.v1.ExportService",
        "grpc_method": "StreamSession",
        "grpc_type": "server_stream",
    }
    ok0 = metric("ferry_rpc_server_handled_total", **labels, grpc_code="OK")
    nf0 = metric("ferry_rpc_server_handled_total", **labels, grpc_code="NOT_FOUND")
    sent0 = metric("ferry_rpc_server_msg_sent_total", **labels)
    lat0 = metric("ferry_rpc_server_handling_seconds_count", **labels)
    unary = {
        "grpc_service": "ferry.v1.ExportService",
        "grpc_method": "ListSemesters",
        "grpc_type": "unary",
    }
    denied0 = metric("ferry_rpc_server_handled_total", **unary, grpc_code="UNAUTHENTICATED")
    with channel(srv) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        got = list(
            stub.StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall"),
                timeout=30,
                metadata=auth(app),
            )
        )
        with pytest.raises(grpc.RpcError):
            list(
                stub.StreamSession(
                    export_pb2.StreamSessionRequest(semester="nope"), timeout=5, metadata=auth(app)
                )
            )
        with pytest.raises(grpc.RpcError):
            stub.ListSemesters(export_pb2.ListSemestersRequest(), timeout=5)
    assert metric("ferry_rpc_server_handled_total", **labels, grpc_code="OK") == ok0 + 1
    assert metric("ferry_rpc_server_handled_total", **labels, grpc_code="NOT_FOUND") == nf0 + 1
    assert metric("ferry_rpc_server_msg_sent_total", **labels) == sent0 + len(got)
    assert metric("ferry_rpc_server_handling_seconds_count", **labels) == lat0 + 2
    assert (
        metric("ferry_rpc_server_handled_total", **unary, grpc_code="UNAUTHENTICATED")
        == denied0 + 1
    )


def test_stream_counts_equal_sql_counts_and_sha256_verifies(
    server: tuple[App, Server], seeded_url: str
) -> None:
    app, srv = server
    with channel(srv) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        messages = list(
            stub.StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall", batch_size=100),
                timeout=30,
                metadata=auth(app),
            )
        )
    header = messages[0].chunk.header.metadata
    trailer = messages[-1].chunk.trailer
    batches = [m.chunk.records for m in messages[1:-1]]
    received: dict[str, int] = {}
    seen_order: list[str] = []
    for b in batches:
        (name,) = [f.name for f, _ in b.ListFields()]
        received[name] = received.get(name, 0) + len(getattr(b, name))
        if not seen_order or seen_order[-1] != name:
            seen_order.append(name)
    assert seen_order == [n for n in SCHOOL.order if received.get(n)]  # dependency order
    engine = make_engine(seeded_url)
    with engine.connect() as conn:
        for e in SCHOOL.in_order():
            expected = conn.execute(count_in_scope(SCHOOL, e, "2026-fall", False)).scalar_one()
            assert (
                received.get(e.name, 0)
                == expected
                == trailer.counts[e.name]
                == header.counts[e.name]
            ), e.name
        # An independent check of the scope rule for one entity, written in plain SQL.
        grades = conn.execute(
            sa.text(
                "SELECT count(*) FROM grades g JOIN enrollments en ON g.enrollment_ref = en.id "
                "JOIN courses c ON en.course_ref = c.id JOIN students st ON en.student_ref = st.id "
                "WHERE c.semester = '2026-fall' AND g.deleted_at IS NULL "
                "AND en.deleted_at IS NULL AND c.deleted_at IS NULL AND st.deleted_at IS NULL"
            )
        ).scalar_one()
    engine.dispose()
    assert received["grades"] == grades
    assert batch_digest(iter(batches)) == trailer.sha256
    assert header.exported_by == "tester"
    assert abs(header.exported_at.ToDatetime(dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(
        minutes=1
    )
    assert all(m.ByteSize() < 1024 * 1024 for m in messages)


def test_include_deleted_sends_soft_deleted_rows(server: tuple[App, Server]) -> None:
    app, srv = server
    with channel(srv) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        live = list(
            stub.StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall"),
                timeout=30,
                metadata=auth(app),
            )
        )
        every = list(
            stub.StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall", include_deleted=True),
                timeout=30,
                metadata=auth(app),
            )
        )
    assert every[-1].chunk.trailer.total_records > live[-1].chunk.trailer.total_records
    deleted = [
        r
        for m in every[1:-1]
        for f, recs in m.chunk.records.ListFields()
        for r in recs
        if r.HasField("deleted_at")
    ]
    assert deleted and every[0].chunk.header.metadata.include_deleted


def test_invalid_argument_carries_the_field_as_bad_request_detail(
    server: tuple[App, Server],
) -> None:
    app, srv = server
    with channel(srv) as ch, pytest.raises(grpc.RpcError) as e:
        list(
            export_pb2_grpc.ExportServiceStub(ch).StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall", batch_size=99_999),
                timeout=5,
                metadata=auth(app),
            )
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(e.value)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "batch_size"


def test_default_deadline_applies_to_calls_without_one(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(
        seeded_url,
        FERRY_SERVER_DEFAULT_TIMEOUT_SECONDS="0.000001",
        FERRY_SERVER_SERVICES="[{name: export}]",
    )
    with running(app) as srv, channel(srv) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            list(
                stub.StreamSession(
                    export_pb2.StreamSessionRequest(semester="2026-fall"), metadata=auth(app)
                )
            )
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # A client's own deadline wins over the default.
        assert list(
            stub.StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall"),
                timeout=30,
                metadata=auth(app),
            )
        )


def test_unknown_service_or_filter_fails_start_naming_known(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    from ferry.plugins import PluginError

    app = make_app(seeded_url)
    with pytest.raises(PluginError, match="unknown service 'exprot'; known: auth, export"):
        Server(app, ["exprot"])
    bad = make_app(seeded_url, FERRY_SERVER_FILTERS="[logging, nope]")
    with pytest.raises(
        PluginError, match="unknown filters plugin 'nope'; known: auth, deadline, logging, metrics"
    ):
        Server(bad)


def test_graceful_stop_turns_health_not_serving_and_finishes(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(seeded_url)
    srv = Server(app)
    srv.start()
    ch = channel(srv)
    health = health_pb2_grpc.HealthStub(ch)
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    srv.health.enter_graceful_shutdown()
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        == health_pb2.HealthCheckResponse.NOT_SERVING
    )
    srv.stop(grace=1, deregister_wait=0)
    with pytest.raises(grpc.RpcError) as e:
        health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()


def test_lost_database_is_unavailable_without_sql_in_the_message(
    make_app: Callable[..., App],
) -> None:
    app = make_app("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    with running(app) as srv, channel(srv) as ch, pytest.raises(grpc.RpcError) as e:
        export_pb2_grpc.ExportServiceStub(ch).ListSemesters(
            export_pb2.ListSemestersRequest(), timeout=10, metadata=auth(app)
        )
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert e.value.details() == "the database is unavailable; try again shortly"


def test_each_rpc_logs_one_structured_line(
    server: tuple[App, Server], caplog: pytest.LogCaptureFixture
) -> None:
    app, srv = server
    with caplog.at_level("INFO", logger="ferry.rpc.access"), channel(srv) as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        stub.ListSemesters(
            export_pb2.ListSemestersRequest(), timeout=5, metadata=auth(app, "viewer")
        )
        with pytest.raises(grpc.RpcError):
            stub.ListSemesters(export_pb2.ListSemestersRequest(), timeout=5)
    lines = [r for r in caplog.records if getattr(r, "event", "") == "rpc"]
    assert [(r.method, r.code, r.caller) for r in lines] == [  # type: ignore[attr-defined]
        ("/ferry.v1.ExportService/ListSemesters", "OK", "tester"),
        ("/ferry.v1.ExportService/ListSemesters", "UNAUTHENTICATED", "-"),
    ]
    assert all(r.duration_ms >= 0 and r.peer for r in lines)  # type: ignore[attr-defined]


def test_metrics_endpoint_serves_prometheus_text(server: tuple[App, Server]) -> None:
    import urllib.request

    from ferry.rpc.metrics_http import serve_metrics

    app, srv = server
    http, port = serve_metrics("127.0.0.1", 0)
    try:
        with channel(srv) as ch:
            export_pb2_grpc.ExportServiceStub(ch).ListSemesters(
                export_pb2.ListSemestersRequest(), timeout=5, metadata=auth(app)
            )
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        http.shutdown()
    assert 'ferry_rpc_server_handled_total{grpc_code="OK",grpc_method="ListSemesters"' in body
    assert "ferry_rpc_server_handling_seconds_bucket" in body
